"""Accounts and their login sessions in the review store.

Passwords arrive here already hashed (argon2id, auth.py); a session token is returned once and
stored only as its sha256, so a copy of the database logs nobody in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from pipeline.review.audit import now_iso
from pipeline.review.db import ReviewDatabase
from pipeline.review.errors import Conflict, Invalid, NotFound
from pipeline.review.vocabulary import AccountRole

USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: AccountRole


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

    def set_password(self, name: str, password_hash: str, *, actor: str) -> None:
        """A new password chosen by someone else (the demo's one-time password); audited, unlike a rehash."""
        with self._db.change(actor, "password_reset") as change:
            updated = change.conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
            if updated.rowcount != 1:
                raise NotFound(f"no user {name}")
            change.conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            change.record(detail={"name": name})

    def users(self) -> list[User]:
        with self._db.reading() as conn:
            rows = conn.execute("SELECT name, role FROM users ORDER BY name").fetchall()
        return [User(name, AccountRole(role)) for name, role in rows]

    def password_hash(self, name: str) -> tuple[User, str] | None:
        with self._db.reading() as conn:
            row = conn.execute("SELECT name, role, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else (User(row[0], AccountRole(row[1])), row[2])

    def replace_password_hash(self, name: str, password_hash: str) -> None:
        """After argon2's parameters changed, the next successful login stores the stronger hash."""
        with self._db.unaudited_write() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))

    def create_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A new random token (returned once, stored only as its sha256) and its session."""
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + ttl_s)
        with self._db.change(user.name, "login") as change:
            change.conn.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
            change.conn.execute(
                "INSERT INTO sessions (token_sha256, user_name, csrf_token, expires_at) VALUES (?, ?, ?, ?)",
                (_token_sha256(token), user.name, session.csrf_token, session.expires_at))
            change.record(detail={"expires_at": session.expires_at})
        return token, session

    def session(self, token: str) -> Session | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT u.name, u.role, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.name = s.user_name"
                " WHERE s.token_sha256 = ? AND s.expires_at > ?", (_token_sha256(token), time.time())).fetchone()
        return None if row is None else Session(User(row[0], AccountRole(row[1])), row[2], row[3])

    def end_session(self, token: str) -> None:
        with self._db.unaudited_write() as conn:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_sha256(token),))


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
