"""The long-lived objects a request works with, built once per app and reached through a dependency."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from pipeline.evidence import EvidenceStore
from pipeline.review.accounts import User
from pipeline.review.cameras import CameraBoard
from pipeline.review.cases import ReviewCase
from pipeline.review.errors import Conflict
from pipeline.review.evidence_check import TamperedFile, tampered_evidence
from pipeline.review.intake import CaseIntake, NotesReader
from pipeline.review.login_throttle import LoginThrottle
from pipeline.review.schemas import CaseDetail
from pipeline.review.settings import ReviewSettings
from pipeline.review.signed_heads import HeadSigner
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import Decision
from pipeline.review.workflow import WorkflowConfig
from pipeline.review.workflow_steps import WorkflowSteps


@dataclass(frozen=True, slots=True)
class ReviewServices:
    settings: ReviewSettings
    store: ReviewStore
    evidence: EvidenceStore
    intake: CaseIntake
    notes: NotesReader
    cameras: CameraBoard
    signer: HeadSigner
    workflow: WorkflowConfig  # the 处置流程's units and deadlines
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @property
    def steps(self) -> WorkflowSteps:
        """The 处置流程's steps on this service's store, evidence, table and district clock."""
        return WorkflowSteps(self.store.cases, self.evidence, self.workflow, self.settings.display_timezone)

    def case_detail(self, case: ReviewCase) -> CaseDetail:
        """The case as the API and the page show it, with its notes from the queue and its audit trail."""
        audit = self.store.audit.entries(case.case_id)
        return CaseDetail.build(case, self.notes.notes(case.case_id), audit,
                                tampered_evidence(self.evidence, case, audit))

    def tampered_evidence(self, case: ReviewCase) -> list[TamperedFile]:
        return tampered_evidence(self.evidence, case, self.store.audit.entries(case.case_id))

    def refuse_unacknowledged_tampering(self, case: ReviewCase) -> None:
        """Conflict while any evidence file differs from its record and no supervisor has acknowledged it."""
        names = [file.name for file in self.tampered_evidence(case) if not file.acknowledged]
        if names:
            raise Conflict(f"案件 {case.case_id} 的证据文件 {'、'.join(names)} 缺失或与案件记录的 sha256 不符"
                           f"（证据文件校验失败）：须由中队长确认知悉（POST /api/cases/{case.case_id}/"
                           "acknowledge-tampering）后才能确认、驳回或标记重复；也可以上报此案件")

    def decide(self, user: User, case_id: str, decision: Decision, *, version: int | None = None,
               **fields) -> ReviewCase:
        """A decision on a new case, one case at a time as every route takes it (a bulk decision too):
        refused while its evidence differs from its record unacknowledged, except escalating, which is what
        an officer should do with evidence that does not hold; then CaseRepository.decide's rules."""
        if decision is not Decision.ESCALATE:
            self.refuse_unacknowledged_tampering(self.store.cases.get(case_id))
        return self.store.cases.decide(case_id, user, decision, expected_version=version, **fields)

    def close(self) -> None:
        """Release everything, for whoever made the app; an app's lifespan only stops the intake."""
        self.intake.stop()
        self.notes.close()
        self.store.close()


def services(request: Request) -> ReviewServices:
    return request.app.state.review
