"""Triage beyond one decision: correcting a case's plate, deciding several cases at once from the list,
and the cases a case may repeat, to mark it a duplicate of one of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from pipeline.review.accounts import User
from pipeline.review.cases import check_decision
from pipeline.review.duplicates import duplicate_candidates
from pipeline.review.errors import ReviewError
from pipeline.review.plate_schemas import PlateCorrectionIn
from pipeline.review.routers.dependencies import (
    CASE_ERRORS,
    FORBIDDEN,
    CaseId,
    Review,
    Reviewer,
    bad_request,
    refusal,
)
from pipeline.review.schemas import CaseDetail
from pipeline.review.services import ReviewServices
from pipeline.review.triage_schemas import (
    BulkDecisionIn,
    BulkDecisionOut,
    BulkResultOut,
    DuplicateCandidateOut,
    DuplicateSuggestionsOut,
)
from pipeline.review.vocabulary import STATUS_LABELS, Decision
from pipeline.types import BackendUnavailable

router = APIRouter(prefix="/cases", tags=["cases"])


@router.post("/bulk", response_model=BulkDecisionOut, responses={
    **FORBIDDEN, **bad_request("a rejection without a reason, or with 'other' and no note")},
    summary="批量确认 or 批量驳回: each case decided as its own decision would be (claims, tampered evidence, an "
            "audit entry each); the answer says per case what happened")
def bulk_decision(body: BulkDecisionIn, caller: Reviewer, review: Review) -> BulkDecisionOut:
    action = Decision(body.action)
    fields = {"note": body.note}
    if action is Decision.REJECT:
        # Refused once for all, not case by case: the same reason would fail every one of them.
        check_decision(action, body.reason, body.note, None)
        fields["reason"] = body.reason
    results = [_decide_one(review, caller.user, case_id, action, body.versions.get(case_id), fields)
               for case_id in dict.fromkeys(body.case_ids)]
    return BulkDecisionOut.of(action, results)


def _decide_one(review: ReviewServices, user: User, case_id: str, action: Decision, version: int | None,
                fields: dict) -> BulkResultOut:
    try:
        case = review.decide(user, case_id, action, version=version, **fields)
    except (ReviewError, BackendUnavailable) as refused:
        if isinstance(refused, BackendUnavailable):
            code, detail = "backend_unavailable", f"存储服务暂时无法连接，请稍后再试（{refused}）"
        else:
            code, detail = refused.code, refused.describe(review.settings.display_timezone)
        try:
            status = review.store.cases.get(case_id).status
        except ReviewError:
            status = None
        return BulkResultOut(case_id=case_id, done=False, status=status,
                             status_label=STATUS_LABELS[status] if status else None, code=code, detail=detail)
    return BulkResultOut(case_id=case_id, done=True, status=case.status, status_label=STATUS_LABELS[case.status])


@router.post("/{case_id}/plate", response_model=CaseDetail, responses={
    **CASE_ERRORS, **bad_request("the text is no Chinese plate (code plate_format), is the plate already, or the "
                                 "case's kind has no plate"),
    **refusal(409, "The case is closed, or someone else holds it (code case_claimed)")},
    summary="更正车牌: the officer's plate in force from now on; the machine's read is kept beside it (audited)")
def correct_plate(case_id: CaseId, body: PlateCorrectionIn, caller: Reviewer, review: Review) -> CaseDetail:
    review.store.plates.correct(case_id, caller.user, body.text, colour=body.colour, reason=body.reason)
    return review.case_detail(review.store.cases.get(case_id))


@router.get("/{case_id}/duplicates", response_model=DuplicateSuggestionsOut, responses=CASE_ERRORS,
            summary="The cases this one may repeat: same camera and zone, or same plate, confirmed within the "
                    "window (hours, default the service's setting); most likely first")
def duplicates(case_id: CaseId, caller: Reviewer, review: Review,
               hours: Annotated[float | None, Query(gt=0, le=7 * 24)] = None) -> DuplicateSuggestionsOut:
    case = review.store.cases.get(case_id)
    window_h = hours or review.settings.duplicate_window_h
    zone = review.settings.display_timezone
    return DuplicateSuggestionsOut(case_id=case_id, window_h=window_h, candidates=[
        DuplicateCandidateOut.of(candidate, zone)
        for candidate in duplicate_candidates(review.store.cases, case, window_h)])
