"""ReviewStore: the review service's state in one SQLite file (WAL).

It holds the reviewable cases (each CaseRecord as received, its status, assignee and decision),
the officers' accounts and sessions, and the audit trail. Every state change and its audit entry
are written in one transaction, so there is never a decision without its entry or the reverse.
The audit table has no UPDATE or DELETE path in this code, and triggers refuse both as well.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.durable import immediate_transaction
from pipeline.review.audit import GENESIS_SHA256, AuditEntry, canonical_json, seal
from pipeline.review.vocabulary import Decision, RejectReason, Role, Status
from pipeline.types import CaseRecord

DEFAULT_REVIEW_DB = Path("var/review/review.sqlite3")
SYSTEM_ACTOR = "system"
USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,  -- CaseRecord.to_dict() as canonical JSON, as received from the queue
    record_sha256 TEXT NOT NULL,
    violation TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    zone_id TEXT NOT NULL,
    confirmed_at REAL NOT NULL,  -- epoch seconds of confirmed_wall: the list's order and time filter
    search_text TEXT NOT NULL,  -- lower-cased case id, camera name, address, grid code and plate
    status TEXT NOT NULL,
    assignee TEXT,
    decided_by TEXT,
    decided_at TEXT,
    reject_reason TEXT,
    decision_note TEXT,
    duplicate_of TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_newest ON cases (confirmed_at DESC, case_id DESC);
CREATE INDEX IF NOT EXISTS cases_by_status ON cases (status, confirmed_at DESC);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,  -- argon2id, from auth.py
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,  -- the token itself is never stored
    user_name TEXT NOT NULL REFERENCES users (name),
    csrf_token TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    case_id TEXT,
    before TEXT,  -- JSON or NULL
    after TEXT,
    detail TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_case ON audit (case_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
COMMIT;
"""
_CASE_COLUMNS = ("case_id, record, record_sha256, status, assignee, decided_by, decided_at, reject_reason, "
                 "decision_note, duplicate_of, received_at")


class ReviewError(Exception):
    """A request the store refuses; subclasses say which HTTP answer fits."""


class NotFound(ReviewError):
    pass


class Conflict(ReviewError):
    """The case (or name) is not in a state that allows this, e.g. deciding a case twice."""


class NotAllowed(ReviewError):
    """This user may not do this to this case (e.g. an officer deciding a case assigned to another)."""


class Invalid(ReviewError):
    """The request names something that does not fit (unknown duplicate target, missing reason text)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ReviewCase:
    """A case as the review service holds it: the record as filed plus the review's own fields."""

    record: CaseRecord
    record_sha256: str
    status: Status
    assignee: str | None
    decided_by: str | None
    decided_at: str | None
    reject_reason: RejectReason | None
    decision_note: str | None
    duplicate_of: str | None
    received_at: str

    @property
    def case_id(self) -> str:
        return self.record.case_id

    def review_state(self) -> dict[str, Any]:
        """The fields a decision changes; the before/after of its audit entry."""
        return {"status": self.status.value, "assignee": self.assignee, "decided_by": self.decided_by,
                "reject_reason": self.reject_reason.value if self.reject_reason else None,
                "note": self.decision_note, "duplicate_of": self.duplicate_of}


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: Status | None = None
    violation: str | None = None
    camera_id: str | None = None
    zone_id: str | None = None
    assignee: str | None = None
    since: datetime | None = None  # on confirmed_wall, inclusive
    until: datetime | None = None  # exclusive
    text: str | None = None  # substring of case id, camera name, address, grid code or plate

    def where(self) -> tuple[str, list[Any]]:
        clauses, values = [], []
        for column, value in (("status", self.status), ("violation", self.violation), ("camera_id", self.camera_id),
                              ("zone_id", self.zone_id), ("assignee", self.assignee)):
            if value:
                clauses.append(f"{column} = ?")
                values.append(str(value))
        if self.since:
            clauses.append("confirmed_at >= ?")
            values.append(self.since.timestamp())
        if self.until:
            clauses.append("confirmed_at < ?")
            values.append(self.until.timestamp())
        if self.text:
            escaped = self.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("search_text LIKE ? ESCAPE '\\'")
            values.append(f"%{escaped}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: list[ReviewCase]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The cases before and after one case in the list's order (newest first) under a filter."""

    newer: str | None = None
    older: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record_sha256(record: CaseRecord) -> str:
    return hashlib.sha256(canonical_json(record.to_dict())).hexdigest()


class ReviewStore:
    """Thread-safe: one connection behind a lock serves the app's threads; other processes (the
    CLI's ``verify`` and ``users add``) open their own and wait on SQLite's busy timeout."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- cases -----------------------------------------------------------------------------------

    def receive(self, record: CaseRecord) -> bool:
        """Store a case from the queue; False, with nothing changed, when it is already here."""
        location = record.location
        search_text = " ".join(str(part) for part in (record.case_id, record.camera_name, record.camera_id,
                                                      location.get("address") or "", location.get("grid_code") or "",
                                                      (record.plate or {}).get("text") or ""))
        digest = record_sha256(record)
        with immediate_transaction(self._conn, self._lock) as conn:
            inserted = conn.execute(
                "INSERT INTO cases (case_id, record, record_sha256, violation, camera_id, zone_id, confirmed_at,"
                " search_text, status, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (case_id) DO NOTHING",
                (record.case_id, canonical_json(record.to_dict()).decode(), digest, record.violation,
                 record.camera_id, record.zone_id, datetime.fromisoformat(record.confirmed_wall).timestamp(),
                 search_text.lower(), Status.NEW.value, now_iso()),
            ).rowcount == 1
            if inserted:
                _append(conn, SYSTEM_ACTOR, "case_received", record.case_id, None, {"status": Status.NEW.value},
                        {"record_sha256": digest, "violation": record.violation, "camera_id": record.camera_id})
        return inserted

    def get(self, case_id: str) -> ReviewCase:
        with self._lock:
            row = self._conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise NotFound(f"no case {case_id}")
        return _case_from_row(row)

    def list_cases(self, filters: CaseFilter, *, page: int = 1, per_page: int = 25) -> CasePage:
        where, values = filters.where()
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM cases{where}", values).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY confirmed_at DESC, case_id DESC LIMIT ? OFFSET ?",
                [*values, per_page, (page - 1) * per_page],
            ).fetchall()
        return CasePage([_case_from_row(row) for row in rows], total, page, per_page)

    def distinct(self, column: str) -> list[str]:
        """The values of ``column`` (camera_id, zone_id or violation) among stored cases, for filter menus."""
        if column not in ("camera_id", "zone_id", "violation"):
            raise ValueError(f"no filter menu for {column}")
        with self._lock:
            return [row[0] for row in self._conn.execute(f"SELECT DISTINCT {column} FROM cases ORDER BY 1")]

    def all_case_ids(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT case_id FROM cases ORDER BY confirmed_at, case_id")]

    def neighbours(self, case_id: str, filters: CaseFilter) -> Neighbours:
        """By position, not membership: a case that no longer matches (just decided) still has a next."""
        with self._lock:
            anchor = self._conn.execute("SELECT confirmed_at FROM cases WHERE case_id = ?", (case_id,)).fetchone()
            if anchor is None:
                raise NotFound(f"no case {case_id}")
            where, values = filters.where()
            joiner = " AND " if where else " WHERE "
            newer = self._conn.execute(
                f"SELECT case_id FROM cases{where}{joiner}(confirmed_at, case_id) > (?, ?)"
                " ORDER BY confirmed_at, case_id LIMIT 1", [*values, anchor[0], case_id]).fetchone()
            older = self._conn.execute(
                f"SELECT case_id FROM cases{where}{joiner}(confirmed_at, case_id) < (?, ?)"
                " ORDER BY confirmed_at DESC, case_id DESC LIMIT 1", [*values, anchor[0], case_id]).fetchone()
        return Neighbours(newer=newer[0] if newer else None, older=older[0] if older else None)

    def decide(self, case_id: str, user: User, decision: Decision, *, reason: RejectReason | None = None,
               note: str = "", duplicate_of: str | None = None) -> ReviewCase:
        """Move a new case to the decision's status; one audit entry with the before and after."""
        note = note.strip()
        if decision is Decision.REJECT and reason is None:
            raise Invalid("a rejection needs a reason")
        if reason is RejectReason.OTHER and not note:
            raise Invalid("reason 'other' (其他) needs a note saying why")
        if decision is Decision.DUPLICATE and not duplicate_of:
            raise Invalid("marking a duplicate needs the case it duplicates")
        with immediate_transaction(self._conn, self._lock) as conn:
            case = self._get_in(conn, case_id)
            if case.status is not Status.NEW:
                raise Conflict(f"case {case_id} is already {case.status.value}; a supervisor can reopen it")
            if user.role is Role.OFFICER and case.assignee not in (None, user.name):
                raise NotAllowed(f"case {case_id} is assigned to {case.assignee}")
            if decision is Decision.DUPLICATE:
                _check_duplicate_target(conn, case_id, duplicate_of)
            decided_at = now_iso()
            conn.execute(
                "UPDATE cases SET status = ?, decided_by = ?, decided_at = ?, reject_reason = ?, decision_note = ?,"
                " duplicate_of = ? WHERE case_id = ?",
                (decision.status.value, user.name, decided_at, reason.value if reason else None, note or None,
                 duplicate_of if decision is Decision.DUPLICATE else None, case_id),
            )
            after = self._get_in(conn, case_id)
            _append(conn, user.name, decision.value, case_id, case.review_state(), after.review_state(), {})
        return after

    def reopen(self, case_id: str, user: User, note: str) -> ReviewCase:
        note = note.strip()
        if not note:
            raise Invalid("reopening a case needs a note saying why")
        with immediate_transaction(self._conn, self._lock) as conn:
            case = self._get_in(conn, case_id)
            if case.status is Status.NEW:
                raise Conflict(f"case {case_id} is not decided yet")
            conn.execute(
                "UPDATE cases SET status = ?, decided_by = NULL, decided_at = NULL, reject_reason = NULL,"
                " decision_note = NULL, duplicate_of = NULL WHERE case_id = ?", (Status.NEW.value, case_id))
            after = self._get_in(conn, case_id)
            _append(conn, user.name, "reopen", case_id, case.review_state(), after.review_state(), {"note": note})
        return after

    def assign(self, case_id: str, user: User, assignee: str | None) -> ReviewCase:
        with immediate_transaction(self._conn, self._lock) as conn:
            case = self._get_in(conn, case_id)
            if assignee is not None:
                row = conn.execute("SELECT role FROM users WHERE name = ?", (assignee,)).fetchone()
                if row is None or Role(row[0]) is Role.ADMIN:
                    raise Invalid(f"{assignee} is not an officer or supervisor account")
            conn.execute("UPDATE cases SET assignee = ? WHERE case_id = ?", (assignee, case_id))
            after = self._get_in(conn, case_id)
            _append(conn, user.name, "assign", case_id, case.review_state(), after.review_state(), {})
        return after

    # -- audit -----------------------------------------------------------------------------------

    def record_event(self, actor: str, action: str, case_id: str | None, detail: dict[str, Any]) -> AuditEntry:
        """An audit entry that changes no state: an evidence view, an export, a login."""
        with immediate_transaction(self._conn, self._lock) as conn:
            return _append(conn, actor, action, case_id, None, None, detail)

    def audit_entries(self, case_id: str | None = None) -> list[AuditEntry]:
        """The whole trail in order, or the entries of one case."""
        return list(self.iter_audit(case_id))

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEntry]:
        query = "SELECT seq, at, actor, action, case_id, before, after, detail, prev_sha256, sha256 FROM audit"
        with self._lock:
            rows = (self._conn.execute(query + " WHERE case_id = ? ORDER BY seq", (case_id,)) if case_id
                    else self._conn.execute(query + " ORDER BY seq")).fetchall()
        for seq, at, actor, action, case, before, after, detail, prev_sha256, sha256 in rows:
            yield AuditEntry(seq=seq, at=at, actor=actor, action=action, case_id=case,
                             before=_json_or_none(before), after=_json_or_none(after), detail=json.loads(detail),
                             prev_sha256=prev_sha256, sha256=sha256)

    # -- users and sessions ----------------------------------------------------------------------

    def add_user(self, name: str, role: Role, password_hash: str, *, actor: str) -> User:
        if not USER_NAME_PATTERN.match(name):
            raise Invalid("a user name is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
        with immediate_transaction(self._conn, self._lock) as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"user {name} exists already")
            conn.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                         (name, role.value, password_hash, now_iso()))
            _append(conn, actor, "user_add", None, None, {"name": name, "role": role.value}, {})
        return User(name, role)

    def set_password(self, name: str, password_hash: str, *, actor: str) -> None:
        """A new password chosen by someone else (the demo's one-time password); audited, unlike a rehash."""
        with immediate_transaction(self._conn, self._lock) as conn:
            if conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)).rowcount != 1:
                raise NotFound(f"no user {name}")
            conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            _append(conn, actor, "password_reset", None, None, None, {"name": name})

    def users(self) -> list[User]:
        with self._lock:
            rows = self._conn.execute("SELECT name, role FROM users ORDER BY name").fetchall()
        return [User(name, Role(role)) for name, role in rows]

    def password_hash(self, name: str) -> tuple[User, str] | None:
        with self._lock:
            row = self._conn.execute("SELECT name, role, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else (User(row[0], Role(row[1])), row[2])

    def replace_password_hash(self, name: str, password_hash: str) -> None:
        """After argon2's parameters changed, the next successful login stores the stronger hash."""
        with immediate_transaction(self._conn, self._lock) as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))

    def create_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A new random token (returned once, stored only as its sha256) and its session."""
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + ttl_s)
        with immediate_transaction(self._conn, self._lock) as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
            conn.execute("INSERT INTO sessions (token_sha256, user_name, csrf_token, expires_at) VALUES (?, ?, ?, ?)",
                         (_token_sha256(token), user.name, session.csrf_token, session.expires_at))
            _append(conn, user.name, "login", None, None, None, {"expires_at": session.expires_at})
        return token, session

    def session(self, token: str) -> Session | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT u.name, u.role, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.name = s.user_name"
                " WHERE s.token_sha256 = ? AND s.expires_at > ?", (_token_sha256(token), time.time())).fetchone()
        return None if row is None else Session(User(row[0], Role(row[1])), row[2], row[3])

    def end_session(self, token: str) -> None:
        with immediate_transaction(self._conn, self._lock) as conn:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_sha256(token),))

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _get_in(conn: sqlite3.Connection, case_id: str) -> ReviewCase:
        row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise NotFound(f"no case {case_id}")
        return _case_from_row(row)


def _append(conn: sqlite3.Connection, actor: str, action: str, case_id: str | None, before: dict | None,
            after: dict | None, detail: dict[str, Any]) -> AuditEntry:
    last = conn.execute("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_sha256 = (last[0] + 1, last[1]) if last else (1, GENESIS_SHA256)
    entry = seal(seq=seq, at=now_iso(), actor=actor, action=action, case_id=case_id, before=before, after=after,
                 detail=detail, prev_sha256=prev_sha256)
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, case_id, before, after, detail, prev_sha256, sha256)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, entry.at, entry.actor, entry.action, entry.case_id, _json_or_null(before), _json_or_null(after),
         canonical_json(detail).decode(), entry.prev_sha256, entry.sha256),
    )
    return entry


def _check_duplicate_target(conn: sqlite3.Connection, case_id: str, duplicate_of: str) -> None:
    if duplicate_of == case_id:
        raise Invalid("a case cannot be a duplicate of itself")
    row = conn.execute("SELECT status, duplicate_of FROM cases WHERE case_id = ?", (duplicate_of,)).fetchone()
    if row is None:
        raise Invalid(f"no case {duplicate_of} to be a duplicate of")
    if row[0] == Status.DUPLICATE.value:
        # Chains of duplicates would hide the original; point at it instead.
        raise Invalid(f"case {duplicate_of} is itself a duplicate of {row[1]}; mark this one a duplicate of {row[1]}")


def _case_from_row(row: tuple) -> ReviewCase:
    (_, record, digest, status, assignee, decided_by, decided_at, reason, note, duplicate_of, received_at) = row
    return ReviewCase(
        record=CaseRecord.from_dict(json.loads(record)), record_sha256=digest, status=Status(status),
        assignee=assignee, decided_by=decided_by, decided_at=decided_at,
        reject_reason=RejectReason(reason) if reason else None, decision_note=note, duplicate_of=duplicate_of,
        received_at=received_at)


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _json_or_null(value: dict | None) -> str | None:
    return None if value is None else canonical_json(value).decode()


def _json_or_none(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)
