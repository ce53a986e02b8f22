"""The API's bodies for a case's 处置流程 (workflow.py): its field photos and camera rechecks, and the
evidence URL every file of a case is served at."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, Field

from pipeline.review.cases import ReviewCase


class PhotoOut(BaseModel):
    name: str
    disposal: int = Field(description="which report of disposal it came with: 1, then 2 after a send-back, …")
    content_type: str
    sha256: str
    size: int
    url: str


class RecheckOut(BaseModel):
    """摄像头复核: what the patrol's camera showed at the case's spot (`patrol recheck`)."""

    name: str = Field(description="recheck-<n>.jpg, its after-photo")
    number: int
    checked_at: str = Field(description="when it was filed, on the service's clock")
    frame_wall: str = Field(description="when the camera took the picture, on the camera's clock")
    still_present: bool
    confidence: float = Field(description="0..1, in the finding as it reads: present, or cleared")
    result_label: str = Field(description="e.g. 已清除（置信度 0.92）")
    flagged: bool = Field(description="复核未通过: still present at or after the deadline then in force")
    model: str
    sha256: str
    url: str


class LoopOut(BaseModel):
    """A case's 处置流程 (workflow.py); times are ISO 8601 UTC, null until the step is taken."""

    case_number: str
    filed_at: str
    unit: str | None = Field(description="the responsible unit's id (GET /api/workflow/units)")
    unit_name: str | None
    dispatched_at: str | None = Field(description="the latest 派遣, 超期改派 or 核查退回")
    deadline: str | None
    disposed_at: str | None = Field(description="the latest report of disposal, unless sent back since")
    verified_at: str | None
    closed_at: str | None
    photos: list[PhotoOut] = Field(description="every report's field photos, oldest first")
    rechecks: list[RecheckOut] = Field(description="the camera's rechecks of the spot, oldest first")

    @classmethod
    def of(cls, case: ReviewCase) -> LoopOut | None:
        loop = case.loop
        if loop is None:
            return None
        return cls(**{name: getattr(loop, name) for name in cls.model_fields if name not in ("photos", "rechecks")},
                   photos=[PhotoOut(name=p.name, disposal=p.disposal, content_type=p.content_type, sha256=p.sha256,
                                    size=p.size, url=evidence_url(case.case_id, p.name)) for p in loop.photos],
                   rechecks=[RecheckOut(**{name: getattr(r, name) for name in RecheckOut.model_fields if name != "url"},
                                        url=evidence_url(case.case_id, r.name)) for r in loop.rechecks])


def evidence_url(case_id: str, name: str) -> str:
    return f"/api/cases/{quote(case_id, safe='')}/evidence/{quote(name, safe='')}"
