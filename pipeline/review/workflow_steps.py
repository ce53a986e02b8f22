"""The steps of the 处置流程 (workflow.py) as changes of the review store.

Each step checks the case as its own transaction reads it (workflow.check_step), writes the loop's
columns and the new status, and records its audit entry, in one transaction
(CaseRepository.change_state); the outbox entry for the city platform goes with it (outbox.py).
"""

from __future__ import annotations

import posixpath
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from pipeline.evidence import EvidenceStore
from pipeline.review.accounts import User
from pipeline.review.audit import utc_iso
from pipeline.review.cases import CaseRepository, ReviewCase
from pipeline.review.errors import Invalid
from pipeline.review.photos import MAX_PHOTOS, check_photo
from pipeline.review.vocabulary import Status
from pipeline.review.workflow import MAX_DEADLINE, Step, WorkflowConfig, check_step, now
from pipeline.types import CaseRecord

Write = Callable[[sqlite3.Connection, ReviewCase], dict[str, Any]]


class WorkflowSteps:
    """``zone``: the district's clock, whose day a case number counts in."""

    def __init__(self, cases: CaseRepository, evidence: EvidenceStore, config: WorkflowConfig, zone: tzinfo) -> None:
        self._cases = cases
        self._evidence = evidence
        self._config = config
        self._zone = zone

    def file(self, case_id: str, user: User, note: str = "") -> ReviewCase:
        """立案: the confirmed case gets the next case number of the day."""
        def write(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            filed = now()
            day = f"{self._config.case_number_prefix}-{filed.astimezone(self._zone):%Y%m%d}-"
            # Numbers are given inside the write transaction, so two filings never count the same row.
            filed_today = conn.execute("SELECT COUNT(*) FROM case_loop WHERE substr(case_number, 1, ?) = ?",
                                       (len(day), day)).fetchone()[0]
            number = f"{day}{filed_today + 1:04d}"
            conn.execute("INSERT INTO case_loop (case_id, case_number, filed_at) VALUES (?, ?, ?)",
                         (case.case_id, number, utc_iso(filed)))
            return {"case_number": number, "note": note.strip()}

        return self._take(Step.FILE, case_id, user, write)

    def dispatch(self, case_id: str, user: User, unit_id: str, *, deadline: datetime | None = None,
                 note: str = "") -> ReviewCase:
        """派遣 to a unit, with the deadline of the violation's kind unless one is given; an overdue
        dispatched case is re-dispatched (超期改派) the same way."""
        unit = self._config.unit(unit_id)
        step = Step.REDISPATCH if self._cases.get(case_id).status is Status.DISPATCHED else Step.DISPATCH

        def write(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            dispatched = now()
            due = deadline or self._config.deadline(case.record.violation, dispatched)
            if not dispatched < due <= dispatched + MAX_DEADLINE:
                raise Invalid(f"处置期限须晚于现在，且在 {MAX_DEADLINE.days} 天之内")
            _update_loop(conn, case.case_id, unit=unit.id, unit_name=unit.name, dispatched_at=utc_iso(dispatched),
                         deadline=utc_iso(due))
            detail = {"unit": unit.id, "unit_name": unit.name, "deadline": utc_iso(due), "note": note.strip()}
            if step is Step.REDISPATCH and case.loop:
                detail.update(overdue_unit=case.loop.unit, overdue_deadline=case.loop.deadline)
            return detail

        return self._take(step, case_id, user, write)

    def dispose(self, case_id: str, user: User, uploads: Sequence[tuple[str, bytes]], note: str = "") -> ReviewCase:
        """处置: the unit's report of disposal with its field photos ((file name, bytes) as uploaded).

        Every photo is checked, and the step itself, before any is stored in the evidence store;
        photos are stored by their sha256, so a change that fails after storing them leaves no
        file that could be mistaken for another."""
        if not uploads:
            raise Invalid("上报处置须附至少一张现场照片")
        if len(uploads) > MAX_PHOTOS:
            raise Invalid(f"一次上报处置最多 {MAX_PHOTOS} 张照片，收到 {len(uploads)} 张")
        photos = [check_photo(name, data) for name, data in uploads]
        case = self._cases.get(case_id)
        check_step(Step.DISPOSE, case.status, user.role, case.loop)
        folder = evidence_folder(case.record)
        stored = [self._evidence.put(f"{folder}/disposal/{photo.sha256}.{photo.kind.extension}", photo.data,
                                     photo.kind.content_type) for photo in photos]

        def write(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            disposal = 1 + conn.execute("SELECT COALESCE(MAX(disposal), 0) FROM disposal_photos WHERE case_id = ?",
                                        (case.case_id,)).fetchone()[0]
            rows = [{"name": f"disposal-{disposal}-{index}.{photo.kind.extension}", "key": item.key,
                     "sha256": item.sha256, "content_type": item.content_type, "size": len(photo.data)}
                    for index, (photo, item) in enumerate(zip(photos, stored, strict=True), 1)]
            conn.executemany("INSERT INTO disposal_photos (case_id, disposal, name, key, sha256, content_type, size)"
                             " VALUES (:case_id, :disposal, :name, :key, :sha256, :content_type, :size)",
                             [{**row, "case_id": case.case_id, "disposal": disposal} for row in rows])
            _update_loop(conn, case.case_id, disposed_at=utc_iso(now()))
            return {"disposal": disposal, "photos": rows, "note": note.strip()}

        return self._take(Step.DISPOSE, case_id, user, write)

    def verify(self, case_id: str, user: User, *, accept: bool, note: str = "") -> ReviewCase:
        """核查: accept the disposal, or send the case back to the unit (核查退回, with a note saying
        why) under a fresh deadline of its kind.

        A disposal the camera's recheck found still there may be accepted: the camera can be wrong
        (a passing lorry, a like car on the same spot), and the supervisor has its after-photo beside
        the unit's field photos. The page warns, and the entry names the recheck it went against."""
        note = note.strip()
        if accept:
            def accepted(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
                _update_loop(conn, case.case_id, verified_at=utc_iso(now()))
                recheck = case.loop.recheck_of_disposal if case.loop else None
                if recheck is None or not recheck.still_present:
                    return {"note": note}
                against = {"name": recheck.name, "confidence": recheck.confidence}
                return {"note": note, "against_camera_recheck": against}

            return self._take(Step.VERIFY, case_id, user, accepted)
        if not note:
            raise Invalid("核查退回须填写退回原因")

        def sent_back(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            again = now()
            due = self._config.deadline(case.record.violation, again)
            _update_loop(conn, case.case_id, dispatched_at=utc_iso(again), deadline=utc_iso(due), disposed_at=None)
            return {"note": note, "deadline": utc_iso(due)}

        return self._take(Step.SEND_BACK, case_id, user, sent_back)

    def close(self, case_id: str, user: User, note: str = "") -> ReviewCase:
        """结案."""
        def write(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            _update_loop(conn, case.case_id, closed_at=utc_iso(now()))
            return {"note": note.strip()}

        return self._take(Step.CLOSE, case_id, user, write)

    def _take(self, step: Step, case_id: str, user: User, write: Write) -> ReviewCase:
        def apply(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            transition = check_step(step, case.status, user.role, case.loop)
            # Who took the step as the entry keeps them (姓名, 执法证号), whatever the account becomes: the dossier's 处置经过.
            detail = {**user.identity(), **write(conn, case)}
            conn.execute("UPDATE cases SET status = ? WHERE case_id = ?", (transition.target.value, case.case_id))
            return detail

        return self._cases.change_state(case_id, user.name, step.value, apply)


def _update_loop(conn: sqlite3.Connection, case_id: str, **columns: str | None) -> None:
    assignments = ", ".join(f"{column} = ?" for column in columns)  # names from this module, never from a request
    conn.execute(f"UPDATE case_loop SET {assignments} WHERE case_id = ?", [*columns.values(), case_id])


def evidence_folder(record: CaseRecord) -> str:
    """Where the case's evidence lies (2026-12-07/<camera>/<case id>), so its photos lie beside it."""
    keys = [item.key for item in record.evidence.values()]
    return posixpath.dirname(keys[0]) if keys and "/" in keys[0] else f"cases/{record.case_id}"
