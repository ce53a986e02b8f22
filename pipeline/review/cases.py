"""The reviewable cases in the review store: each CaseRecord as received, its status, assignee and decision.

Every change here (receiving, deciding, reopening, assigning) is written with its audit entry in
one transaction (ReviewDatabase.change); the entry's before and after are the case's
``review_state``, which ``patrol verify`` compares with the stored case. A case's ``version`` is
the seq of the latest such entry: a decision sent with the version its page saw is refused once
the case has changed since (claims, views and exports leave the version as it is).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.review.accounts import User, account_role, find_account, refuse_disabled_assignee
from pipeline.review.audit import canonical_json, now_iso
from pipeline.review.claims import (
    CLAIM_COLUMNS,
    Claim,
    ClaimScope,
    claim_condition,
    claim_from_columns,
    refuse_unless_open_to,
)
from pipeline.review.db import AuditedChange, ReviewDatabase
from pipeline.review.errors import Conflict, Invalid, NoSuchCase
from pipeline.review.local_time import DEFAULT_DISPLAY_TIMEZONE, show_clock
from pipeline.review.outbox import note_status_change
from pipeline.review.plates import PLATE_CORRECTION_COLUMN, CasePlate, PlateCorrection, case_plate, correction_from_json
from pipeline.review.vocabulary import (
    ACTION_LABELS,
    IN_LOOP,
    STATUS_LABELS,
    AccountRole,
    Decision,
    RejectReason,
    Status,
)
from pipeline.review.workflow import (
    LOOP_COLUMN,
    RECHECK_FAILED_CONDITION,
    CaseLoop,
    loop_from_json,
    overdue_condition,
)
from pipeline.types import CaseRecord, EvidenceItem

SYSTEM_ACTOR = "system"
# The seq of the case's latest entry that recorded its review state (one whose ``after`` has a status).
_VERSION = ("(SELECT MAX(seq) FROM audit WHERE audit.case_id = cases.case_id"
            " AND json_extract(audit.after, '$.status') IS NOT NULL)")
_CASE_COLUMNS = ("case_id, record, record_sha256, status, assignee, decided_by, decided_at, reject_reason, "
                 f"decision_note, duplicate_of, received_at, {CLAIM_COLUMNS}, {_VERSION}, {LOOP_COLUMN}, "
                 f"{PLATE_CORRECTION_COLUMN}")
CHANGES_PER_POLL = 200  # audit entries one look at the changes reads at most; the cursor says where it stopped


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
    claim: Claim | None = None  # while it lasts
    version: int = 0
    loop: CaseLoop | None = None  # its 处置流程, from 立案 on (workflow.py)
    plate_correction: PlateCorrection | None = None  # an officer's, in force (plates.py)

    @property
    def case_id(self) -> str:
        return self.record.case_id

    @property
    def plate(self) -> CasePlate | None:
        """The plate the case shows: the officer's correction, else the machine's read; None without one."""
        return case_plate(self.record.plate, self.plate_correction)

    def review_state(self) -> dict[str, Any]:
        """The fields a decision or a step of the loop changes; the before/after of its audit entry."""
        return {"status": self.status.value, "assignee": self.assignee, "decided_by": self.decided_by,
                "reject_reason": self.reject_reason.value if self.reject_reason else None,
                "note": self.decision_note, "duplicate_of": self.duplicate_of,
                **(self.loop.audit_state() if self.loop else {})}

    def files(self) -> dict[str, EvidenceItem]:
        """Every file of the case by name: its evidence as filed, the field photos of its disposal and the
        after-photos of its camera rechecks."""
        later = [*self.loop.photos, *self.loop.rechecks] if self.loop else []
        return {**self.record.evidence, **{photo.name: photo.as_evidence() for photo in later}}


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
    claim: ClaimScope | None = None
    viewer: str | None = None  # whose "mine" the claim filter means
    case_ids: tuple[str, ...] | None = None  # only these
    overdue: bool = False  # only dispatched cases past their deadline now (超期)
    recheck_failed: bool = False  # only cases whose latest camera recheck is flagged (复核未通过)

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
        if self.claim:
            condition, parameters = claim_condition(self.claim, self.viewer or "")
            clauses.append(condition)
            values.extend(parameters)
        if self.case_ids is not None:
            clauses.append(f"case_id IN ({', '.join('?' * len(self.case_ids))})")
            values.extend(self.case_ids)
        if self.overdue:
            condition, parameters = overdue_condition()
            clauses.append(condition)
            values.extend(parameters)
        if self.recheck_failed:
            clauses.append(RECHECK_FAILED_CONDITION)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: list[ReviewCase]
    total: int
    page: int
    per_page: int
    cursor: int  # the audit seq the list is up to date with: where a look at its changes starts


@dataclass(frozen=True, slots=True)
class CaseChanges:
    """The cases whose audit trail grew past a cursor with a change (not a view or an export)."""

    cursor: int  # where the next look starts
    new: list[ReviewCase]  # received since, and matching the filter
    changed: list[ReviewCase]  # changed since (a claim, a decision), and matching the filter
    gone: list[str]  # changed since and no longer matching it: decided by someone else, say


class CaseChanged(Conflict):
    """A decision sent from a page that showed the case as it was before its latest change."""

    code = "case_changed"

    def __init__(self, case: ReviewCase, by: str, action: str, at: str) -> None:
        self.case, self.by, self.action, self.at = case, by, action, at
        super().__init__(self.describe(ZoneInfo(DEFAULT_DISPLAY_TIMEZONE)))

    def describe(self, zone: tzinfo) -> str:
        when = show_clock(datetime.fromisoformat(self.at), zone)
        return (f"案件 {self.case.case_id} 在您打开后已有变化：{self.by} 于 {when} "
                f"{ACTION_LABELS.get(self.action, self.action)}，现为“{STATUS_LABELS[self.case.status]}”。"
                "请重新加载此案件，看过最新情况后再处理")


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

    def changes(self, after: int, filters: CaseFilter) -> CaseChanges:
        """What changed after audit seq ``after``, for a list that polls instead of reloading."""
        with self._db.reading() as conn:
            head = _head_seq(conn)
            rows = conn.execute(
                "SELECT seq, case_id, action FROM audit WHERE seq > ? AND seq <= ? AND case_id IS NOT NULL"
                " AND after IS NOT NULL ORDER BY seq LIMIT ?", (after, head, CHANGES_PER_POLL)).fetchall()
            touched = tuple(dict.fromkeys(case_id for _, case_id, _ in rows))
            where, values = replace(filters, case_ids=touched).where()
            matching = [_case_from_row(row) for row in conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY confirmed_at DESC, case_id DESC", values)]
        received = {case_id for _, case_id, action in rows if action == "case_received"}
        shown = {case.case_id for case in matching}
        return CaseChanges(cursor=rows[-1][0] if len(rows) == CHANGES_PER_POLL else head,
                           new=[case for case in matching if case.case_id in received],
                           changed=[case for case in matching if case.case_id not in received],
                           gone=[case_id for case_id in touched if case_id not in shown])


    def list_cases(self, filters: CaseFilter, *, page: int = 1, per_page: int = 25) -> CasePage:
        where, values = filters.where()
        with self._db.reading() as conn:
            cursor = _head_seq(conn)  # read first: a change racing the list is seen twice, never missed
            total = conn.execute(f"SELECT COUNT(*) FROM cases{where}", values).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY confirmed_at DESC, case_id DESC LIMIT ? OFFSET ?",
                [*values, per_page, (page - 1) * per_page],
            ).fetchall()
        return CasePage([_case_from_row(row) for row in rows], total, page, per_page, cursor)

    def matching(self, condition: str, values: list[Any], *, order_by: str, limit: int) -> list[ReviewCase]:
        """The cases meeting ``condition``, SQL on ``cases`` written elsewhere (duplicates.py), ``values``
        filling its parameters and then ``order_by``'s."""
        with self._db.reading() as conn:
            rows = conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE {condition} ORDER BY {order_by} LIMIT ?",
                                [*values, limit]).fetchall()
        return [_case_from_row(row) for row in rows]

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
                raise NoSuchCase(case_id)
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
               note: str = "", duplicate_of: str | None = None, expected_version: int | None = None) -> ReviewCase:
        """Move a new case to the decision's status, ending any claim on it; one audit entry with the
        before and after, and the decider's 姓名 and 执法证号 as their account has them now.

        ``expected_version``: the case's version as the decider's page showed it; CaseChanged when it
        has changed since. CaseClaimed while someone else holds the case."""
        note = note.strip()
        check_decision(decision, reason, note, duplicate_of)
        with self._db.change(user.name, decision.value, case_id) as change:
            case = _case_as_seen(change.conn, case_id, expected_version)
            refuse_unless_open_to(user, case_id, case.status, case.assignee, case.claim, change.conn)
            if decision is Decision.DUPLICATE:
                _check_duplicate_target(change.conn, case_id, duplicate_of)
            change.conn.execute(
                "UPDATE cases SET status = ?, decided_by = ?, decided_at = ?, reject_reason = ?, decision_note = ?,"
                " duplicate_of = ?, claimed_by = NULL, claim_expires_at = NULL WHERE case_id = ?",
                (decision.status.value, user.name, now_iso(), reason.value if reason else None, note or None,
                 duplicate_of if decision is Decision.DUPLICATE else None, case_id),
            )
            decider = find_account(change.conn, user.name) or user
            return _record_state_change(change, case, decider.identity())

    def reopen(self, case_id: str, user: User, note: str, *, expected_version: int | None = None) -> ReviewCase:
        note = note.strip()
        if not note:
            raise Invalid("重新打开须填写原因")
        with self._db.change(user.name, "reopen", case_id) as change:
            case = _case_as_seen(change.conn, case_id, expected_version)
            if case.status is Status.NEW:
                raise Conflict(f"案件 {case_id} 尚未处理，无需重新打开")
            if case.status in IN_LOOP:
                raise Conflict(f"案件 {case_id} 已立案（{STATUS_LABELS[case.status]}），不能重新打开：请按处置流程办理")
            change.conn.execute(
                "UPDATE cases SET status = ?, decided_by = NULL, decided_at = NULL, reject_reason = NULL,"
                " decision_note = NULL, duplicate_of = NULL WHERE case_id = ?", (Status.NEW.value, case_id))
            return _record_state_change(change, case, {"note": note})

    def assign(self, case_id: str, user: User, assignee: str | None) -> ReviewCase:
        with self._db.change(user.name, "assign", case_id) as change:
            case = _get_in(change.conn, case_id)
            if assignee is not None and account_role(change.conn, assignee) in (None, AccountRole.ADMIN):
                raise Invalid(f"{assignee} 不是执法队员或中队长的账号")
            refuse_disabled_assignee(change.conn, assignee)
            change.conn.execute("UPDATE cases SET assignee = ? WHERE case_id = ?", (assignee, case_id))
            return _record_state_change(change, case)

    def change_state(self, case_id: str, actor: str, action: str,
                     apply: Callable[[sqlite3.Connection, ReviewCase], dict[str, Any]]) -> ReviewCase:
        """A change whose rules live elsewhere (the 处置流程: workflow_steps.py; a camera recheck:
        recheck.py): ``apply`` checks the case as this transaction reads it, writes the change, and
        returns its audit entry's detail."""
        with self._db.change(actor, action, case_id) as change:
            case = _get_in(change.conn, case_id)
            return _record_state_change(change, case, apply(change.conn, case))


def check_decision(decision: Decision, reason: RejectReason | None, note: str, duplicate_of: str | None) -> None:
    """What a decision needs besides the case: Invalid without it (a bulk decision asks once for all its cases)."""
    if decision is Decision.REJECT and reason is None:
        raise Invalid("驳回须选择原因")
    if reason is RejectReason.OTHER and not note.strip():
        raise Invalid("驳回原因为“其他”（other）时须填写说明")
    if decision is Decision.DUPLICATE and not duplicate_of:
        raise Invalid("标记重复须填写与之重复的案件编号")


def _record_state_change(change: AuditedChange, before: ReviewCase, detail: dict[str, Any] | None = None) -> ReviewCase:
    """The case as the change left it, with the entry recording its review state before and after,
    and the change for the city platform when it is one (outbox.py)."""
    after = _get_in(change.conn, before.case_id)
    entry = change.record(before=before.review_state(), after=after.review_state(), detail=detail)
    note_status_change(change.conn, before, after, entry)
    return after


def _get_in(conn: sqlite3.Connection, case_id: str) -> ReviewCase:
    row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    if row is None:
        raise NoSuchCase(case_id)
    return _case_from_row(row)


def _head_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]


def _case_as_seen(conn: sqlite3.Connection, case_id: str, expected_version: int | None) -> ReviewCase:
    """The case, provided it is still the version its page showed (or no version was sent)."""
    case = _get_in(conn, case_id)
    if expected_version is not None and case.version != expected_version:
        actor, action, at = conn.execute("SELECT actor, action, at FROM audit WHERE seq = ?",
                                         (case.version,)).fetchone()
        by = find_account(conn, actor)
        raise CaseChanged(case, by.label if by else actor, action, at)
    return case


def _check_duplicate_target(conn: sqlite3.Connection, case_id: str, duplicate_of: str) -> None:
    if duplicate_of == case_id:
        raise Invalid("案件不能与自身重复")
    row = conn.execute("SELECT status, duplicate_of FROM cases WHERE case_id = ?", (duplicate_of,)).fetchone()
    if row is None:
        raise Invalid(f"没有案件 {duplicate_of}，无法标记为与之重复")
    if row[0] == Status.DUPLICATE.value:
        # Chains of duplicates would hide the original; point at it instead.
        raise Invalid(f"案件 {duplicate_of} 本身是 {row[1]} 的重复，请将此案件标记为与 {row[1]} 重复")


def _case_from_row(row: tuple) -> ReviewCase:
    (_, record, digest, status, assignee, decided_by, decided_at, reason, note, duplicate_of, received_at,
     claimed_by, claim_expires_at, holder_name, version, loop, plate_correction) = row
    status = Status(status)
    return ReviewCase(
        record=CaseRecord.from_dict(json.loads(record)), record_sha256=digest, status=status,
        assignee=assignee, decided_by=decided_by, decided_at=decided_at,
        reject_reason=RejectReason(reason) if reason else None, decision_note=note, duplicate_of=duplicate_of,
        received_at=received_at, claim=claim_from_columns(claimed_by, claim_expires_at, holder_name),
        version=version or 0, loop=loop_from_json(loop, status),
        plate_correction=correction_from_json(plate_correction))
