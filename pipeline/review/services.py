"""The long-lived objects a request works with, built once per app and reached through a dependency."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from pipeline.evidence import EvidenceStore
from pipeline.review.cameras import CameraBoard
from pipeline.review.cases import ReviewCase
from pipeline.review.intake import CaseIntake, NotesReader
from pipeline.review.schemas import CaseDetail
from pipeline.review.settings import ReviewSettings
from pipeline.review.store import ReviewStore


@dataclass(frozen=True, slots=True)
class ReviewServices:
    settings: ReviewSettings
    store: ReviewStore
    evidence: EvidenceStore
    intake: CaseIntake
    notes: NotesReader
    cameras: CameraBoard

    def case_detail(self, case: ReviewCase) -> CaseDetail:
        """The case as the API and the page show it, with its notes from the queue and its audit trail."""
        return CaseDetail.build(case, self.notes.notes(case.case_id), self.store.audit.entries(case.case_id))

    def close(self) -> None:
        """Release everything, for whoever made the app; an app's lifespan only stops the intake."""
        self.intake.stop()
        self.notes.close()
        self.store.close()


def services(request: Request) -> ReviewServices:
    return request.app.state.review
