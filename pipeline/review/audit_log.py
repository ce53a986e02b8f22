"""The stored audit trail: sealing entries onto the chain in the audit table, and reading them back.

The columns hold exactly what :func:`pipeline.review.audit.seal` hashed (before, after and detail
as canonical JSON), so ``patrol verify`` recomputes every sha256 from what is stored.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from pipeline.review.audit import GENESIS_SHA256, AuditEntry, canonical_json, now_iso, seal

if TYPE_CHECKING:  # db.py imports append_entry from here
    from pipeline.review.db import ReviewDatabase

_COLUMNS = "seq, at, actor, action, case_id, before, after, detail, prev_sha256, sha256"


def append_entry(conn: sqlite3.Connection, actor: str, action: str, case_id: str | None, before: dict | None,
                 after: dict | None, detail: dict[str, Any]) -> AuditEntry:
    """The next entry of the chain, written in the caller's transaction (which holds the write lock)."""
    last = conn.execute("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_sha256 = (last[0] + 1, last[1]) if last else (1, GENESIS_SHA256)
    entry = seal(seq=seq, at=now_iso(), actor=actor, action=action, case_id=case_id, before=before, after=after,
                 detail=detail, prev_sha256=prev_sha256)
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, entry.at, entry.actor, entry.action, entry.case_id, _json_or_null(before), _json_or_null(after),
         canonical_json(detail).decode(), entry.prev_sha256, entry.sha256),
    )
    return entry


class AuditLog:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def record_event(self, actor: str, action: str, case_id: str | None, detail: dict[str, Any]) -> AuditEntry:
        """An audit entry that changes no state: an evidence view, an export."""
        with self._db.change(actor, action, case_id) as change:
            return change.record(detail=detail)

    def entries(self, case_id: str | None = None) -> list[AuditEntry]:
        """The whole trail in order, or the entries of one case."""
        query = f"SELECT {_COLUMNS} FROM audit"
        with self._db.reading() as conn:
            rows = (conn.execute(query + " WHERE case_id = ? ORDER BY seq", (case_id,)) if case_id
                    else conn.execute(query + " ORDER BY seq")).fetchall()
        return [_entry_from_row(row) for row in rows]

    def head(self) -> AuditEntry | None:
        """The newest entry; None for an empty trail."""
        with self._db.reading() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else _entry_from_row(row)


def _entry_from_row(row: tuple) -> AuditEntry:
    seq, at, actor, action, case_id, before, after, detail, prev_sha256, sha256 = row
    return AuditEntry(seq=seq, at=at, actor=actor, action=action, case_id=case_id, before=_json_or_none(before),
                      after=_json_or_none(after), detail=json.loads(detail), prev_sha256=prev_sha256, sha256=sha256)


def _json_or_null(value: dict | None) -> str | None:
    return None if value is None else canonical_json(value).decode()


def _json_or_none(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)
