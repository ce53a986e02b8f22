"""The review service's state in one SQLite file (WAL), and the one way to change it.

The file holds the reviewable cases, the officers' accounts and sessions, and the audit trail;
the repositories (cases.py, accounts.py, audit_log.py) share one :class:`ReviewDatabase`. Every
state change goes through :meth:`ReviewDatabase.change`, which writes the change and its audit
entry in one transaction, so there is never a decision without its entry or the reverse. The
audit table has no UPDATE or DELETE path in this code, and triggers refuse both as well.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from pipeline.config.workspace import DEFAULT_WORKSPACE
from pipeline.durable import READ_BUSY_TIMEOUT_S, immediate_transaction, naming_unusable_file, open_wal
from pipeline.review.audit import AuditEntry
from pipeline.review.audit_log import append_entry

DEFAULT_REVIEW_DB = DEFAULT_WORKSPACE.review_db
BUSY_TIMEOUT_S = 30.0  # how long a write waits while another process (the CLI, a second app) holds the file

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
    -- and the _ADDED_COLUMNS below
);
CREATE INDEX IF NOT EXISTS cases_newest ON cases (confirmed_at DESC, case_id DESC);
CREATE INDEX IF NOT EXISTS cases_by_status ON cases (status, confirmed_at DESC);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,  -- argon2id, from auth.py
    created_at TEXT NOT NULL
    -- and the _ADDED_COLUMNS below
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,  -- the token itself is never stored
    user_name TEXT NOT NULL REFERENCES users (name),
    csrf_token TEXT NOT NULL,
    expires_at REAL NOT NULL
    -- and the _ADDED_COLUMNS below
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
-- The 处置流程 of a confirmed case (workflow.py), from 立案 on: one row per filed case.
CREATE TABLE IF NOT EXISTS case_loop (
    case_id TEXT PRIMARY KEY REFERENCES cases (case_id),
    case_number TEXT NOT NULL UNIQUE,  -- e.g. 双山-20261207-0001: a per-day sequence, given in the 立案 transaction
    filed_at TEXT NOT NULL,  -- ISO 8601 UTC, as every time in this table
    unit TEXT,  -- the responsible unit's id in the workflow table, and its name then
    unit_name TEXT,
    dispatched_at TEXT,
    deadline TEXT,  -- overdue is this against the clock, computed on read
    disposed_at TEXT,
    verified_at TEXT,
    closed_at TEXT
);
CREATE TABLE IF NOT EXISTS disposal_photos (
    case_id TEXT NOT NULL REFERENCES case_loop (case_id),
    name TEXT NOT NULL,  -- disposal-<n>-<i>.jpg|png
    disposal INTEGER NOT NULL,  -- n: 1 for the first report of disposal, 2 after a send-back, ...
    key TEXT NOT NULL,  -- in the evidence store
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (case_id, name)
);
-- 摄像头复核 (recheck.py): what the patrol's camera showed at a case's spot, with its after-photo.
CREATE TABLE IF NOT EXISTS camera_rechecks (
    case_id TEXT NOT NULL REFERENCES case_loop (case_id),
    name TEXT NOT NULL,  -- recheck-<n>.jpg
    number INTEGER NOT NULL,  -- n: 1 for the case's first recheck
    checked_at TEXT NOT NULL,  -- filed, on this service's clock (ISO 8601 UTC) like the loop's times
    frame_wall TEXT NOT NULL,  -- the picture's time on the camera's clock, with its offset
    still_present INTEGER NOT NULL,
    confidence REAL NOT NULL,
    flagged INTEGER NOT NULL,  -- 复核未通过: still present at or after the deadline then in force
    model TEXT NOT NULL,  -- the detector's name
    key TEXT NOT NULL,  -- of the after-photo in the evidence store
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (case_id, name)
);
-- Status changes for the city platform (outbox.py), written in the change's transaction.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,  -- the order they are sent in
    idempotency_key TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,  -- canonical JSON, the same bytes on every try
    sent_at TEXT  -- NULL until the platform answered 2xx
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, seq);
-- An officer's corrections of a case's plate (plates.py), the latest in force; the case's record keeps the
-- machine's read as filed, and each correction has its audit entry.
CREATE TABLE IF NOT EXISTS plate_corrections (
    seq INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    text TEXT NOT NULL,  -- without separators, e.g. 鲁A12345
    colour TEXT NOT NULL,  -- vocabulary.PlateColour
    corrected_by TEXT NOT NULL,
    corrected_at TEXT NOT NULL,  -- ISO 8601 UTC
    reason TEXT,
    audit_seq INTEGER NOT NULL  -- the correction's entry in the audit chain
);
CREATE INDEX IF NOT EXISTS plate_corrections_by_case ON plate_corrections (case_id, seq);
COMMIT;
"""
# Columns that came after the tables: CREATE TABLE IF NOT EXISTS leaves an older file's tables as
# they were, so each is added where it is missing.
_ADDED_COLUMNS = {
    "users": ("disabled INTEGER NOT NULL DEFAULT 0", "must_change_password INTEGER NOT NULL DEFAULT 0",
              "display_name TEXT", "badge_number TEXT"),  # 姓名 and 执法证号; NULL until an admin sets them
    # Who holds a new case (claims.py) and until when (epoch seconds); a claim past it is no claim.
    "cases": ("claimed_by TEXT", "claim_expires_at REAL"),
    # An older file's sessions read as idle since 1970: their users log in again once.
    "sessions": ("last_seen_at REAL NOT NULL DEFAULT 0",),
}


class AuditedChange:
    """One change in progress: its transaction's connection, and the audit entry that must go with it."""

    def __init__(self, conn: sqlite3.Connection, actor: str, action: str, case_id: str | None) -> None:
        self.conn = conn
        self._actor, self._action, self._case_id = actor, action, case_id
        self.entry: AuditEntry | None = None
        self.is_no_op = False

    def record(self, *, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
               detail: dict[str, Any] | None = None) -> AuditEntry:
        """Seal this change's entry onto the chain, in the change's own transaction."""
        self.entry = append_entry(self.conn, self._actor, self._action, self._case_id, before, after, detail or {})
        return self.entry

    def nothing_changed(self) -> None:
        """The change turned out to be a no-op (a case received twice), so it gets no entry."""
        self.is_no_op = True


class ReviewDatabase:
    """Thread-safe: one connection behind a lock serves the app's threads' writes, another their
    reads; other processes (the CLI's ``verify`` and ``users add``) open their own and wait on
    SQLite's busy timeout for each other's writes. Reads (WAL) wait for no one's writes.

    A file that is no SQLite database, or a damaged one, raises DatabaseFileError naming it."""

    # Set where heads are signed (ReviewStore): called with each entry once its transaction has
    # committed, so an entry rolled back is never signed.
    entry_committed: Callable[[AuditEntry], None] | None = None

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = open_wal(self._path, BUSY_TIMEOUT_S)
        try:
            with naming_unusable_file(self._path):
                self._conn.executescript(_SCHEMA)
                self._add_missing_columns()
            # Reads have their own connection: a write waiting out another process's write lock
            # would otherwise hold up every page and session check behind this process's lock.
            self._read_lock = threading.Lock()
            self._reader = open_wal(self._path, READ_BUSY_TIMEOUT_S, read_only=True)
        except BaseException:
            self._conn.close()
            raise

    def _add_missing_columns(self) -> None:
        with immediate_transaction(self._conn, self._lock) as conn:
            for table, columns in _ADDED_COLUMNS.items():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._conn.close()
            self._reader.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The read-only connection, kept from the app's other threads for the block; it sees
        every committed change."""
        with self._read_lock, naming_unusable_file(self._path):
            yield self._reader

    @contextmanager
    def change(self, actor: str, action: str, case_id: str | None = None) -> Iterator[AuditedChange]:
        """A write transaction that commits only with its audit entry (``record``) or a declared no-op.

        Any exception in the block rolls back the change and its entry together.
        """
        with naming_unusable_file(self._path), immediate_transaction(self._conn, self._lock) as conn:
            change = AuditedChange(conn, actor, action, case_id)
            yield change
            if change.entry is None and not change.is_no_op:
                raise RuntimeError(f"{action} changed the review store without recording its audit entry")
        if change.entry is not None and self.entry_committed is not None:
            self.entry_committed(change.entry)

    def unaudited_write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction without an audit entry, for bookkeeping that decides nothing: an
        upgraded password hash, an ended session, the time of a session's latest request."""
        return immediate_transaction(self._conn, self._lock)
