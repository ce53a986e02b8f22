"""The long-lived objects a request works with, built once per app and reached through a dependency."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from pipeline.evidence import EvidenceStore
from pipeline.review.cameras import CameraBoard
from pipeline.review.intake import CaseIntake, NotesReader
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

    def close(self) -> None:
        """Release everything, for whoever made the app; an app's lifespan only stops the intake."""
        self.intake.stop()
        self.notes.close()
        self.store.close()


def services(request: Request) -> ReviewServices:
    return request.app.state.review
