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
MIN_PASSWORD_LENGTH = 10
# A session's latest request is written down only once this share of the idle timeout has passed
# since the last one written: a busy page costs a write now and then, not one per request, and a
# session may end this much early.
_TOUCH_AFTER = 0.1
_USER_COLUMNS = "name, role, disabled, must_change_password"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: AccountRole
    active: bool = True
    must_change_password: bool = False  # after an admin's reset: the user may do nothing else until then


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def account_role(conn: sqlite3.Connection, name: str) -> AccountRole | None:
    """The role of account ``name``, read inside the caller's transaction; None when there is none."""
    row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else AccountRole(row[0])


class AccountRepository:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def add_user(self, name: str, role: AccountRole, password_hash: str, *, actor: str) -> User:
        if not USER_NAME_PATTERN.match(name):
            raise Invalid("a user name is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
        with self._db.change(actor, "user_add") as change:
            if account_role(change.conn, name) is not None:
                raise Conflict(f"user {name} exists already")
            change.conn.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                                (name, role.value, password_hash, now_iso()))
            change.record(after={"name": name, "role": role.value})
        return User(name, role)

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
        return None if row is None else (_user_from_row(row), row[4])

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

    def session(self, token: str, idle_timeout_s: float) -> Session | None:
        """The session of ``token`` while it lasts: within its lifetime, no longer idle than
        ``idle_timeout_s``, its account enabled. This request counts as its latest."""
        now = time.time()
        digest = _token_sha256(token)
        # Disabling deletes the account's sessions, but a login that raced it may have added one since.
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT u.name, u.role, u.disabled, u.must_change_password, s.csrf_token, s.expires_at, s.last_seen_at"
                " FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_sha256 = ? AND s.expires_at > ?"
                " AND s.last_seen_at > ? AND u.disabled = 0", (digest, now, now - idle_timeout_s)).fetchone()
        if row is None:
            return None
        if now - row[6] >= idle_timeout_s * _TOUCH_AFTER:
            with self._db.unaudited_write() as conn:
                conn.execute("UPDATE sessions SET last_seen_at = ? WHERE token_sha256 = ?", (now, digest))
        return Session(_user_from_row(row[:4]), row[4], row[5])

    def end_session(self, token: str) -> None:
        with self._db.unaudited_write() as conn:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_sha256(token),))


def _user_from_row(row: tuple) -> User:
    name, role, disabled, must_change_password = row[:4]
    return User(name, AccountRole(role), active=not disabled, must_change_password=bool(must_change_password))


def _user_in(conn: sqlite3.Connection, name: str) -> User:
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no user {name}")
    return _user_from_row(row)


def _end_sessions(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,)).rowcount


def _keep_an_active_admin(conn: sqlite3.Connection, user: User) -> None:
    """Conflict when ``user`` is the last active admin: nobody could manage the accounts after them."""
    if user.role is not AccountRole.ADMIN or not user.active:
        return
    others = conn.execute("SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0 AND name != ?",
                          (AccountRole.ADMIN.value, user.name)).fetchone()[0]
    if others == 0:
        raise Conflict(f"{user.name} is the last active admin; make another account an admin first")


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
