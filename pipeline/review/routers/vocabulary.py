"""The Chinese labels of the service's fixed values, for clients that show them."""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.review.routers.dependencies import FORBIDDEN, AnyUser
from pipeline.review.schemas import VocabularyOut
from pipeline.review.vocabulary import REJECT_REASON_LABELS, ROLE_LABELS, STATUS_LABELS, VIOLATION_LABELS

router = APIRouter(tags=["vocabulary"])


@router.get("/vocabulary", response_model=VocabularyOut, responses=FORBIDDEN,
            summary="Chinese labels of statuses, violations, reject reasons and roles")
def vocabulary(caller: AnyUser) -> VocabularyOut:
    return VocabularyOut(statuses={k.value: v for k, v in STATUS_LABELS.items()}, violations=VIOLATION_LABELS,
                         reject_reasons={k.value: v for k, v in REJECT_REASON_LABELS.items()},
                         roles={k.value: v for k, v in ROLE_LABELS.items()})
