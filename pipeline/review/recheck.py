"""摄像头复核 on the review side: what the patrol's camera found at a case's spot (a RecheckFinding,
which `patrol recheck` gets from pipeline/engine/recheck.py) filed on the case as evidence.

Filed: the after-photo, in the evidence store under the case by its sha256 like a disposal's field
photos; a row of ``camera_rechecks`` (recheck-<n>.jpg) with the finding; and a ``camera_recheck``
audit entry, all in one transaction. The entry's before and after carry each after-photo's sha256
and finding, so `patrol verify` holds them to the trail as it does the field photos; its detail
holds the finding in full (still present, confidence, the picture's time, the model).

Which cases: dispatched or disposed ones (a recheck of a verified or closed case would judge a
disposal already judged). Due: a disposed case without a recheck since its report of disposal, and
a dispatched one past its deadline without a recheck since the deadline.

复核未通过 (flagged): a finding of "still present" filed at or after the deadline in force, on
this service's clock (workflow.now) like the loop's other times. A case is flagged while its latest
recheck is: one that finds the spot clear later (after a send-back, say) lifts it. A disposal whose
recheck found the violation still there may still be verified (WorkflowSteps.verify says why).

A camera that cannot be looked at files nothing: the case stays as it is, and the next round tries again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from pipeline.evidence import EvidenceStore
from pipeline.review.audit import utc_iso
from pipeline.review.cases import SYSTEM_ACTOR, CaseFilter, CaseRepository, ReviewCase
from pipeline.review.errors import Conflict
from pipeline.review.vocabulary import STATUS_LABELS, Status
from pipeline.review.workflow import now
from pipeline.review.workflow_steps import evidence_folder
from pipeline.types import RecheckFinding

ACTION = "camera_recheck"
RECHECKABLE = frozenset({Status.DISPATCHED, Status.DISPOSED})
_PER_PAGE = 200


class NotRecheckable(Conflict):
    code = "not_recheckable"

    def __init__(self, case: ReviewCase) -> None:
        super().__init__(f"案件 {case.case_id} 当前为「{STATUS_LABELS[case.status]}」，不做摄像头复核："
                         "复核只针对已派遣或已处置的案件")


class CameraRechecks:
    def __init__(self, cases: CaseRepository, evidence: EvidenceStore) -> None:
        self._cases = cases
        self._evidence = evidence

    def due(self) -> list[ReviewCase]:
        """The cases due for a recheck now (see the module), disposed ones first."""
        disposed = [case for case in self._every(CaseFilter(status=Status.DISPOSED))
                    if case.loop and case.loop.recheck_of_disposal is None]
        overdue = [case for case in self._every(CaseFilter(overdue=True))
                   if case.loop and case.loop.recheck_since(case.loop.deadline) is None]
        return disposed + overdue

    def record(self, case_id: str, finding: RecheckFinding) -> ReviewCase:
        """File ``finding`` on the case; NotRecheckable unless it is dispatched or disposed."""
        case = self._cases.get(case_id)
        if case.status not in RECHECKABLE:
            raise NotRecheckable(case)
        digest = hashlib.sha256(finding.photo_jpeg).hexdigest()
        # Stored by its sha256 before the transaction: one that fails leaves no file mistaken for another.
        item = self._evidence.put(f"{evidence_folder(case.record)}/recheck/{digest}.jpg", finding.photo_jpeg,
                                  "image/jpeg")

        def write(conn: sqlite3.Connection, case: ReviewCase) -> dict[str, Any]:
            if case.status not in RECHECKABLE or case.loop is None:
                raise NotRecheckable(case)
            number = 1 + conn.execute("SELECT COALESCE(MAX(number), 0) FROM camera_rechecks WHERE case_id = ?",
                                      (case.case_id,)).fetchone()[0]
            checked_at = utc_iso(now())
            deadline = case.loop.deadline
            row = {"case_id": case.case_id, "name": f"recheck-{number}.jpg", "number": number,
                   "checked_at": checked_at, "frame_wall": finding.frame_wall,
                   "still_present": finding.still_present, "confidence": finding.confidence,
                   "flagged": finding.still_present and deadline is not None and checked_at >= deadline,
                   "model": str(finding.model.get("name", "")), "key": item.key, "sha256": item.sha256,
                   "content_type": item.content_type, "size": len(finding.photo_jpeg)}
            conn.execute("INSERT INTO camera_rechecks (case_id, name, number, checked_at, frame_wall, still_present,"
                         " confidence, flagged, model, key, sha256, content_type, size) VALUES (:case_id, :name,"
                         " :number, :checked_at, :frame_wall, :still_present, :confidence, :flagged, :model, :key,"
                         " :sha256, :content_type, :size)", row)
            return {**{name: row[name] for name in ("name", "key", "sha256", "frame_wall", "still_present",
                                                    "confidence", "flagged")},
                    "deadline": deadline, "model": finding.model}

        return self._cases.change_state(case_id, SYSTEM_ACTOR, ACTION, write)

    def _every(self, filters: CaseFilter) -> Iterator[ReviewCase]:
        page = 1
        while True:
            found = self._cases.list_cases(filters, page=page, per_page=_PER_PAGE)
            yield from found.cases
            if page * _PER_PAGE >= found.total:
                return
            page += 1
