"""Accounts and their login sessions in the review store.

Passwords arrive here already hashed (argon2id, auth.py); a session token is returned once and
stored only as its sha256, so a copy of the database logs nobody in. A session is a row read on
every request, so deleting an account's rows (disabled, password reset, sessions revoked) ends its
sessions at once, in every server process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, replace

from pipeline.review.audit import now_iso
from pipeline.review.db import ReviewDatabase
from pipeline.review.errors import Conflict, Invalid, NotFound
from pipeline.review.vocabulary import AccountRole

USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
BADGE_NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,32}$")  # 执法证号 as printed on the card
MAX_DISPLAY_NAME = 32
MIN_PASSWORD_LENGTH = 10
# A session's latest request is written down only once this share of the idle timeout has passed
# since the last one written: a busy page costs a write now and then, not one per request, and a
# session may end this much early.
_TOUCH_AFTER = 0.1
_USER_COLUMNS = "name, role, disabled, must_change_password, display_name, badge_number"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: AccountRole
    active: bool = True
    must_change_password: bool = False  # after an admin's reset: the user may do nothing else until then
    display_name: str | None = None  # 姓名, e.g. 王小明; the login name stays the account's key
    badge_number: str | None = None  # 执法证号

    @property
    def label(self) -> str:
        """How officers see this person: the display name, else the login name."""
        return self.display_name or self.name

    def identity(self) -> dict[str, str | None]:
        """Who acted, as a decision's audit entry keeps it: a dossier prints these, whatever the account becomes."""
        return {"display_name": self.display_name, "badge_number": self.badge_number}


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def find_account(conn: sqlite3.Connection, name: str) -> User | None:
    """Account ``name`` as stored now, read inside the caller's transaction; None when there is none."""
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user_from_row(row)


def account_role(conn: sqlite3.Connection, name: str) -> AccountRole | None:
    """The role of account ``name``, read inside the caller's transaction; None when there is none."""
    account = find_account(conn, name)
    return None if account is None else account.role


def refuse_disabled_assignee(conn: sqlite3.Connection, name: str | None) -> None:
    """Invalid when account ``name`` is disabled: a case assigned to it would wait on nobody."""
    account = find_account(conn, name) if name is not None else None
    if account is not None and not account.active:
        raise Invalid(f"{account.label}（{name}）的账号已停用，不能分派案件：请选择在用的执法队员或中队长")


def checked_profile(display_name: str | None, badge_number: str | None) -> tuple[str | None, str | None]:
    """The display name and badge number as stored (trimmed; blank is none); Invalid for either out of form."""
    display_name = (display_name or "").strip() or None
    badge_number = (badge_number or "").strip() or None
    if display_name is not None and (len(display_name) > MAX_DISPLAY_NAME or not display_name.isprintable()):
        raise Invalid(f"a display name is at most {MAX_DISPLAY_NAME} characters, none of them control characters "
                      f"(姓名最多 {MAX_DISPLAY_NAME} 个字)")
    if badge_number is not None and not BADGE_NUMBER_PATTERN.match(badge_number):
        raise Invalid("a badge number is 1-32 letters, digits or '-' (执法证号须为 1-32 位字母、数字或连字符)")
    return display_name, badge_number


class AccountRepository:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def add_user(self, name: str, role: AccountRole, password_hash: str, *, actor: str,
                 display_name: str | None = None, badge_number: str | None = None) -> User:
        if not USER_NAME_PATTERN.match(name):
            raise Invalid("a user name is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit "
                          "(用户名为 1-32 位字母、数字、“.”“_”或“-”，以字母或数字开头)")
        display_name, badge_number = checked_profile(display_name, badge_number)
        with self._db.change(actor, "user_add") as change:
            if account_role(change.conn, name) is not None:
                raise Conflict(f"user {name} exists already (用户名已存在)")
            _refuse_taken_badge(change.conn, name, badge_number)
            change.conn.execute("INSERT INTO users (name, role, password_hash, created_at, display_name, badge_number)"
                                " VALUES (?, ?, ?, ?, ?, ?)",
                                (name, role.value, password_hash, now_iso(), display_name, badge_number))
            user = User(name, role, display_name=display_name, badge_number=badge_number)
            # An account added without them keeps the entry an account has always had.
            profile = {key: value for key, value in user.identity().items() if value is not None}
            change.record(after={"name": name, "role": role.value, **profile})
        return user

    def set_profile(self, name: str, display_name: str | None, badge_number: str | None, *, actor: str) -> User:
        """The account's 姓名 and 执法证号 (None or blank clears one); the same again is a no-op, not audited."""
        display_name, badge_number = checked_profile(display_name, badge_number)
        with self._db.change(actor, "profile_change") as change:
            user = _user_in(change.conn, name)
            changed = replace(user, display_name=display_name, badge_number=badge_number)
            if changed == user:
                change.nothing_changed()
                return user
            _refuse_taken_badge(change.conn, name, badge_number)
            change.conn.execute("UPDATE users SET display_name = ?, badge_number = ? WHERE name = ?",
                                (display_name, badge_number, name))
            change.record(before={"name": name, **user.identity()}, after={"name": name, **changed.identity()})
        return changed

    def set_password(self, name: str, password_hash: str, *, actor: str, must_change: bool) -> User:
        """A new password chosen by someone else (an admin's reset, the demo's one-time password); the
        account's sessions end. ``must_change``: its user must choose their own at the next login."""
        with self._db.change(actor, "password_reset") as change:
            user = _user_in(change.conn, name)
            change.conn.execute("UPDATE users SET password_hash = ?, must_change_password = ? WHERE name = ?",
                                (password_hash, int(must_change), name))
            ended = _end_sessions(change.conn, name)
            change.record(detail={"name": name, "must_change_password": must_change, "sessions_ended": ended})
        return replace(user, must_change_password=must_change)

    def change_own_password(self, name: str, password_hash: str, *, keeping_token: str) -> None:
        """A password the user chose, which ends a reset's must-change; their other sessions end, the one
        that changed it stays."""
        with self._db.change(name, "password_change") as change:
            change.conn.execute("UPDATE users SET password_hash = ?, must_change_password = 0 WHERE name = ?",
                                (password_hash, name))
            ended = change.conn.execute("DELETE FROM sessions WHERE user_name = ? AND token_sha256 != ?",
                                        (name, _token_sha256(keeping_token))).rowcount
            change.record(detail={"name": name, "sessions_ended": ended})

    def set_active(self, name: str, active: bool, *, actor: str) -> User:
        """Enable an account, or disable it: it can no longer log in and its sessions end now. The
        last active admin stays. Asking for the state it is in changes nothing, so it is not audited."""
        with self._db.change(actor, "user_enable" if active else "user_disable") as change:
            user = _user_in(change.conn, name)
            if user.active == active:
                change.nothing_changed()
                return user
            if not active:
                _keep_an_active_admin(change.conn, user)
            change.conn.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(not active), name))
            ended = 0 if active else _end_sessions(change.conn, name)
            change.record(before={"name": name, "active": user.active}, after={"name": name, "active": active},
                          detail={"sessions_ended": ended})
        return replace(user, active=active)

    def set_role(self, name: str, role: AccountRole, *, actor: str) -> User:
        """The account's new role, in force from its next request; the last active admin stays one."""
        with self._db.change(actor, "role_change") as change:
            user = _user_in(change.conn, name)
            if user.role is role:
                change.nothing_changed()
                return user
            if role is not AccountRole.ADMIN:
                _keep_an_active_admin(change.conn, user)
            change.conn.execute("UPDATE users SET role = ? WHERE name = ?", (role.value, name))
            change.record(before={"name": name, "role": user.role.value}, after={"name": name, "role": role.value})
        return replace(user, role=role)

    def revoke_sessions(self, name: str, *, actor: str) -> int:
        """Ends every session of the account now; how many there were. Audited even when none was
        open: that an admin cut the account off is worth the entry."""
        with self._db.change(actor, "sessions_revoke") as change:
            _user_in(change.conn, name)
            ended = _end_sessions(change.conn, name)
            change.record(detail={"name": name, "sessions_ended": ended})
        return ended

    def users(self) -> list[User]:
        with self._db.reading() as conn:
            rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [_user_from_row(row) for row in rows]

    def password_hash(self, name: str) -> tuple[User, str] | None:
        with self._db.reading() as conn:
            row = conn.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else (_user_from_row(row), row[6])

    def replace_password_hash(self, name: str, password_hash: str) -> None:
        """After argon2's parameters changed, the next successful login stores the stronger hash."""
        with self._db.unaudited_write() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))

    def create_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A new random token (returned once, stored only as its sha256) and its session."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(user, secrets.token_urlsafe(24), now + ttl_s)
        with self._db.change(user.name, "login") as change:
            change.conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            change.conn.execute(
                "INSERT INTO sessions (token_sha256, user_name, csrf_token, expires_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (_token_sha256(token), user.name, session.csrf_token, session.expires_at, now))
            change.record(detail={"expires_at": session.expires_at})
        return token, session

    def session(self, token: str, idle_timeout_s: float, *, active: bool = True) -> Session | None:
        """The session of ``token`` while it lasts: within its lifetime, no longer idle than
        ``idle_timeout_s``, its account enabled. This request counts as its latest unless it is not
        the user's doing (``active`` False: a page polling on its own)."""
        now = time.time()
        digest = _token_sha256(token)
        # Disabling deletes the account's sessions, but a login that raced it may have added one since.
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT u.name, u.role, u.disabled, u.must_change_password, u.display_name, u.badge_number,"
                " s.csrf_token, s.expires_at, s.last_seen_at FROM sessions s JOIN users u ON u.name = s.user_name"
                " WHERE s.token_sha256 = ? AND s.expires_at > ? AND s.last_seen_at > ? AND u.disabled = 0",
                (digest, now, now - idle_timeout_s)).fetchone()
        if row is None:
            return None
        user, (csrf_token, expires_at, last_seen_at) = _user_from_row(row), row[6:]
        if active and now - last_seen_at >= idle_timeout_s * _TOUCH_AFTER:
            with self._db.unaudited_write() as conn:
                conn.execute("UPDATE sessions SET last_seen_at = ? WHERE token_sha256 = ?", (now, digest))
        return Session(user, csrf_token, expires_at)

    def end_session(self, token: str) -> None:
        with self._db.unaudited_write() as conn:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_sha256(token),))


def _user_from_row(row: tuple) -> User:
    """The User of a row that starts with _USER_COLUMNS."""
    name, role, disabled, must_change_password, display_name, badge_number = row[:6]
    return User(name, AccountRole(role), active=not disabled, must_change_password=bool(must_change_password),
                display_name=display_name, badge_number=badge_number)


def _user_in(conn: sqlite3.Connection, name: str) -> User:
    user = find_account(conn, name)
    if user is None:
        raise NotFound(f"no user {name} (没有此用户)")
    return user


def _refuse_taken_badge(conn: sqlite3.Connection, name: str, badge_number: str | None) -> None:
    # One card, one officer: a dossier naming the badge must name one person.
    holder = badge_number and conn.execute("SELECT name FROM users WHERE badge_number = ? AND name != ?",
                                           (badge_number, name)).fetchone()
    if holder:
        raise Conflict(f"badge number {badge_number} belongs to {holder[0]} already (执法证号已被占用)")


def _end_sessions(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,)).rowcount


def _keep_an_active_admin(conn: sqlite3.Connection, user: User) -> None:
    """Conflict when ``user`` is the last active admin: nobody could manage the accounts after them."""
    if user.role is not AccountRole.ADMIN or not user.active:
        return
    others = conn.execute("SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0 AND name != ?",
                          (AccountRole.ADMIN.value, user.name)).fetchone()[0]
    if others == 0:
        raise Conflict(f"{user.name} is the last active admin; make another account an admin first "
                       "(最后一个在用的系统管理员不能停用或降级)")


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
