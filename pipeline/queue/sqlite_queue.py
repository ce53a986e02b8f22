"""Case queue in one SQLite file: the single-box deployment and the reference for other backends."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from pathlib import Path

from pipeline.durable import READ_BUSY_TIMEOUT_S, immediate_transaction, naming_unusable_file, open_wal
from pipeline.queue.base import (
    DEFAULT_VISIBILITY_TIMEOUT_S,
    REVIEW_GROUP,
    CaseQueue,
    Delivery,
    UnreadableDelivery,
    read_delivery,
)
from pipeline.types import CaseNote, CaseRecord

# ``cases`` is the stream, ``consumer_groups.last_delivered_seq`` the group's read cursor and
# ``pending`` its pending-entries list, so the Redis backend maps onto the same three ideas.
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS cases (
    -- AUTOINCREMENT: a seq is never reused, so a group cursor can never skip or repeat a case
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL UNIQUE,
    camera_id TEXT NOT NULL,
    violation TEXT NOT NULL,
    confirmed_at REAL NOT NULL,  -- epoch seconds of confirmed_wall, for time-range filters
    published_at REAL NOT NULL,
    record TEXT NOT NULL  -- CaseRecord.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS cases_by_camera ON cases (camera_id, confirmed_at);
CREATE INDEX IF NOT EXISTS cases_by_violation ON cases (violation, confirmed_at);
CREATE TABLE IF NOT EXISTS consumer_groups (
    name TEXT PRIMARY KEY,
    last_delivered_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    group_name TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES cases (seq),
    consumer TEXT NOT NULL,
    delivered_at REAL NOT NULL,  -- epoch seconds: comparable across processes, unlike monotonic
    attempts INTEGER NOT NULL,
    PRIMARY KEY (group_name, seq)
);
CREATE INDEX IF NOT EXISTS pending_by_age ON pending (group_name, delivered_at);
CREATE TABLE IF NOT EXISTS notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    note_id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    note TEXT NOT NULL  -- CaseNote.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS notes_by_case ON notes (case_id, seq);
COMMIT;
"""
# What the schema creates: a file holding all of it needs no write to open.
_SCHEMA_OBJECTS = tuple(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))


class SqliteCaseQueue(CaseQueue):
    """Durable :class:`CaseQueue` on a SQLite file, shareable by threads and by processes.

    One connection guarded by a lock serves the writes of all threads of a process, another the
    reads; other processes open their own queue on the same file and wait on each other's writes
    through SQLite's busy timeout. Reads (WAL) wait for no one's writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        group: str = REVIEW_GROUP,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        busy_timeout_s: float = 30.0,
        poll_interval_s: float = 0.05,
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._group = group
        self._visibility_timeout_s = visibility_timeout_s
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        # Explicit transactions (open_wal), so each publish is exactly one.
        self._conn = open_wal(path, busy_timeout_s)
        try:
            with naming_unusable_file(path):
                self._create_schema_and_group()
            # Reads have their own connection: a claim waiting out another process's write lock
            # would otherwise hold up every read behind this process's lock.
            self._read_lock = threading.Lock()
            self._reader = open_wal(path, min(busy_timeout_s, READ_BUSY_TIMEOUT_S), read_only=True)
        except BaseException:
            self._conn.close()
            raise
        self._closed = False

    def _create_schema_and_group(self) -> None:
        # Only when missing: opening to read (the review page's notes) must not wait for the write
        # lock that another process may hold for long.
        present = self._conn.execute(
            f"SELECT COUNT(*) FROM sqlite_master WHERE name IN ({', '.join('?' * len(_SCHEMA_OBJECTS))})",
            _SCHEMA_OBJECTS,
        ).fetchone()[0]
        if present == len(_SCHEMA_OBJECTS) and self._conn.execute(
            "SELECT 1 FROM consumer_groups WHERE name = ?", (self._group,)
        ).fetchone():
            return
        self._conn.executescript(_SCHEMA)
        # Like XGROUP CREATE ... 0: a new group starts at the beginning, so cases published
        # before the first reader started are still delivered.
        self._conn.execute(
            "INSERT INTO consumer_groups (name, last_delivered_seq) VALUES (?, 0)"
            " ON CONFLICT (name) DO NOTHING",
            (self._group,),
        )

    def publish(self, record: CaseRecord) -> bool:
        row = (
            record.case_id,
            record.camera_id,
            record.violation,
            datetime.fromisoformat(record.confirmed_wall).timestamp(),
            time.time(),
            json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True),
        )
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO cases"
                " (case_id, camera_id, violation, confirmed_at, published_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (case_id) DO NOTHING",
                row,
            )
        return cursor.rowcount == 1

    def consume(self, consumer: str, count: int = 10, block_s: float = 0) -> list[Delivery | UnreadableDelivery]:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        deadline = time.monotonic() + block_s
        while True:
            deliveries = self._claim(consumer, count)
            remaining_s = deadline - time.monotonic()
            if deliveries or remaining_s <= 0:
                return deliveries
            # Polling, because a publish from another process cannot wake this one up.
            time.sleep(min(self._poll_interval_s, remaining_s))

    def ack(self, delivery_id: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM pending WHERE group_name = ? AND seq = ?",
                (self._group, _seq_of(delivery_id)),
            )

    def get(self, case_id: str) -> CaseRecord | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT record FROM cases WHERE case_id = ?", (case_id,)
            ).fetchone()
        return None if row is None else CaseRecord.from_json(row[0])

    def confirmed_between(self, camera_id: str, since: float, until: float) -> list[CaseRecord]:
        """The camera's cases confirmed from ``since`` to ``until`` (epoch seconds, both included), oldest first."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT record FROM cases WHERE camera_id = ? AND confirmed_at BETWEEN ? AND ? ORDER BY confirmed_at",
                (camera_id, since, until),
            ).fetchall()
        return [CaseRecord.from_json(row[0]) for row in rows]

    def add_note(self, note: CaseNote) -> bool:
        with immediate_transaction(self._conn, self._lock) as conn:
            if conn.execute("SELECT 1 FROM cases WHERE case_id = ?", (note.case_id,)).fetchone() is None:
                raise KeyError(f"no case {note.case_id!r} to add note {note.note_id!r} to")
            cursor = conn.execute(
                "INSERT INTO notes (note_id, case_id, note) VALUES (?, ?, ?) ON CONFLICT (note_id) DO NOTHING",
                (note.note_id, note.case_id, json.dumps(note.to_dict(), ensure_ascii=False, sort_keys=True)),
            )
        return cursor.rowcount == 1

    def notes(self, case_id: str) -> list[CaseNote]:
        with self._read_lock:
            rows = self._reader.execute("SELECT note FROM notes WHERE case_id = ? ORDER BY seq", (case_id,)).fetchall()
        return [CaseNote.from_dict(json.loads(row[0])) for row in rows]

    def count(self) -> int:
        with self._read_lock:
            return self._reader.execute("SELECT COUNT(*) FROM cases").fetchone()[0]

    def pending_count(self) -> int:
        with self._read_lock:
            return self._reader.execute(
                "SELECT COUNT(*) FROM pending WHERE group_name = ?", (self._group,)
            ).fetchone()[0]

    def close(self) -> None:
        with self._lock, self._read_lock:
            if not self._closed:
                self._conn.close()
                self._reader.close()
                self._closed = True

    def _claim(self, consumer: str, count: int) -> list[Delivery | UnreadableDelivery]:
        """One transaction: take over timed-out pending deliveries, then read new cases."""
        now = time.time()
        with immediate_transaction(self._conn, self._lock) as conn:
            reclaimed = conn.execute(
                "SELECT p.seq, p.attempts + 1, c.case_id, c.record FROM pending p"
                " JOIN cases c ON c.seq = p.seq"
                " WHERE p.group_name = ? AND p.delivered_at <= ?"
                " ORDER BY p.seq LIMIT ?",
                (self._group, now - self._visibility_timeout_s, count),
            ).fetchall()
            conn.executemany(
                "UPDATE pending SET consumer = ?, delivered_at = ?, attempts = attempts + 1"
                " WHERE group_name = ? AND seq = ?",
                [(consumer, now, self._group, seq) for seq, *_ in reclaimed],
            )
            fresh = conn.execute(
                "SELECT seq, 1, case_id, record FROM cases WHERE seq > ("
                "  SELECT last_delivered_seq FROM consumer_groups WHERE name = ?"
                ") ORDER BY seq LIMIT ?",
                (self._group, count - len(reclaimed)),
            ).fetchall()
            if fresh:
                conn.executemany(
                    "INSERT INTO pending (group_name, seq, consumer, delivered_at, attempts)"
                    " VALUES (?, ?, ?, ?, 1)",
                    [(self._group, seq, consumer, now) for seq, *_ in fresh],
                )
                conn.execute(
                    "UPDATE consumer_groups SET last_delivered_seq = ? WHERE name = ?",
                    (fresh[-1][0], self._group),
                )
        return [
            read_delivery(str(seq), case_id, record, attempts) for seq, attempts, case_id, record in reclaimed + fresh
        ]


def _seq_of(delivery_id: str) -> int:
    try:
        return int(delivery_id)
    except ValueError:
        raise ValueError(f"{delivery_id!r} is not a delivery id of a SQLite case queue") from None
