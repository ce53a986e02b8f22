"""The reviewable cases in the review store: each CaseRecord as received, its status, assignee and decision.

Every change here (receiving, deciding, reopening, assigning) is written with its audit entry in
one transaction (ReviewDatabase.change); the entry's before and after are the case's
``review_state``, which ``patrol verify`` compares with the stored case.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.review.accounts import User, account_role
from pipeline.review.audit import canonical_json, now_iso
from pipeline.review.db import AuditedChange, ReviewDatabase
from pipeline.review.errors import Conflict, Invalid, NotAllowed, NotFound
from pipeline.review.vocabulary import AccountRole, Decision, RejectReason, Status
from pipeline.types import CaseRecord

SYSTEM_ACTOR = "system"
_CASE_COLUMNS = ("case_id, record, record_sha256, status, assignee, decided_by, decided_at, reject_reason, "
                 "decision_note, duplicate_of, received_at")


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


def record_sha256(record: CaseRecord) -> str:
    return hashlib.sha256(canonical_json(record.to_dict())).hexdigest()


class CaseRepository:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def receive(self, record: CaseRecord) -> bool:
        """Store a case from the queue; False, with nothing changed, when it is already here."""
        location = record.location
        search_text = " ".join(str(part) for part in (record.case_id, record.camera_name, record.camera_id,
                                                      location.get("address") or "", location.get("grid_code") or "",
                                                      (record.plate or {}).get("text") or ""))
        digest = record_sha256(record)
        with self._db.change(SYSTEM_ACTOR, "case_received", record.case_id) as change:
            inserted = change.conn.execute(
                "INSERT INTO cases (case_id, record, record_sha256, violation, camera_id, zone_id, confirmed_at,"
                " search_text, status, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (case_id) DO NOTHING",
                (record.case_id, canonical_json(record.to_dict()).decode(), digest, record.violation,
                 record.camera_id, record.zone_id, datetime.fromisoformat(record.confirmed_wall).timestamp(),
                 search_text.lower(), Status.NEW.value, now_iso()),
            ).rowcount == 1
            if inserted:
                change.record(after={"status": Status.NEW.value}, detail={
                    "record_sha256": digest, "violation": record.violation, "camera_id": record.camera_id})
            else:
                change.nothing_changed()
        return inserted

    def get(self, case_id: str) -> ReviewCase:
        with self._db.reading() as conn:
            return _get_in(conn, case_id)

    def list_cases(self, filters: CaseFilter, *, page: int = 1, per_page: int = 25) -> CasePage:
        where, values = filters.where()
        with self._db.reading() as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM cases{where}", values).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY confirmed_at DESC, case_id DESC LIMIT ? OFFSET ?",
                [*values, per_page, (page - 1) * per_page],
            ).fetchall()
        return CasePage([_case_from_row(row) for row in rows], total, page, per_page)

    def distinct(self, column: str) -> list[str]:
        """The values of ``column`` (camera_id, zone_id or violation) among stored cases, for filter menus."""
        if column not in ("camera_id", "zone_id", "violation"):
            raise ValueError(f"no filter menu for {column}")
        with self._db.reading() as conn:
            return [row[0] for row in conn.execute(f"SELECT DISTINCT {column} FROM cases ORDER BY 1")]

    def all_case_ids(self) -> list[str]:
        with self._db.reading() as conn:
            return [row[0] for row in conn.execute("SELECT case_id FROM cases ORDER BY confirmed_at, case_id")]

    def neighbours(self, case_id: str, filters: CaseFilter) -> Neighbours:
        """By position, not membership: a case that no longer matches (just decided) still has a next."""
        with self._db.reading() as conn:
            anchor = conn.execute("SELECT confirmed_at FROM cases WHERE case_id = ?", (case_id,)).fetchone()
            if anchor is None:
                raise NotFound(f"no case {case_id}")
            where, values = filters.where()
            joiner = " AND " if where else " WHERE "
            newer = conn.execute(
                f"SELECT case_id FROM cases{where}{joiner}(confirmed_at, case_id) > (?, ?)"
                " ORDER BY confirmed_at, case_id LIMIT 1", [*values, anchor[0], case_id]).fetchone()
            older = conn.execute(
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
        with self._db.change(user.name, decision.value, case_id) as change:
            case = _get_in(change.conn, case_id)
            if case.status is not Status.NEW:
                raise Conflict(f"case {case_id} is already {case.status.value}; a supervisor can reopen it")
            if user.role is AccountRole.OFFICER and case.assignee not in (None, user.name):
                raise NotAllowed(f"case {case_id} is assigned to {case.assignee}")
            if decision is Decision.DUPLICATE:
                _check_duplicate_target(change.conn, case_id, duplicate_of)
            change.conn.execute(
                "UPDATE cases SET status = ?, decided_by = ?, decided_at = ?, reject_reason = ?, decision_note = ?,"
                " duplicate_of = ? WHERE case_id = ?",
                (decision.status.value, user.name, now_iso(), reason.value if reason else None, note or None,
                 duplicate_of if decision is Decision.DUPLICATE else None, case_id),
            )
            return _record_state_change(change, case)

    def reopen(self, case_id: str, user: User, note: str) -> ReviewCase:
        note = note.strip()
        if not note:
            raise Invalid("reopening a case needs a note saying why")
        with self._db.change(user.name, "reopen", case_id) as change:
            case = _get_in(change.conn, case_id)
            if case.status is Status.NEW:
                raise Conflict(f"case {case_id} is not decided yet")
            change.conn.execute(
                "UPDATE cases SET status = ?, decided_by = NULL, decided_at = NULL, reject_reason = NULL,"
                " decision_note = NULL, duplicate_of = NULL WHERE case_id = ?", (Status.NEW.value, case_id))
            return _record_state_change(change, case, {"note": note})

    def assign(self, case_id: str, user: User, assignee: str | None) -> ReviewCase:
        with self._db.change(user.name, "assign", case_id) as change:
            case = _get_in(change.conn, case_id)
            if assignee is not None and account_role(change.conn, assignee) in (None, AccountRole.ADMIN):
                raise Invalid(f"{assignee} is not an officer or supervisor account")
            change.conn.execute("UPDATE cases SET assignee = ? WHERE case_id = ?", (assignee, case_id))
            return _record_state_change(change, case)


def _record_state_change(change: AuditedChange, before: ReviewCase, detail: dict[str, Any] | None = None) -> ReviewCase:
    """The case as the change left it, with the entry recording its review state before and after."""
    after = _get_in(change.conn, before.case_id)
    change.record(before=before.review_state(), after=after.review_state(), detail=detail)
    return after


def _get_in(conn: sqlite3.Connection, case_id: str) -> ReviewCase:
    row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return _case_from_row(row)


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
