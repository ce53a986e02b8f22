"""The case list, one case with its audit trail, and the decisions on a case."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from pipeline.review.auth import Caller
from pipeline.review.cases import CaseFilter
from pipeline.review.local_time import read_local
from pipeline.review.routers.dependencies import (
    BAD_BODY,
    CASE_ERRORS,
    DECISION_ERRORS,
    FORBIDDEN,
    CaseId,
    Review,
    Reviewer,
    Supervisor,
)
from pipeline.review.schemas import (
    AssignIn,
    AuditEntryOut,
    CaseDetail,
    CasePageOut,
    ConfirmIn,
    DuplicateIn,
    EscalateIn,
    RejectIn,
    ReopenIn,
)
from pipeline.review.services import ReviewServices
from pipeline.review.vocabulary import Decision, Status

MAX_PAGE = 100_000

router = APIRouter(prefix="/cases", tags=["cases"])


def case_filter(
    review: Review,
    status_: Annotated[Status | None, Query(alias="status", description="待审核 new, 已确认 confirmed, …")] = None,
    violation: Annotated[str | None, Query(max_length=64, description="e.g. illegal_parking")] = None,
    camera: Annotated[str | None, Query(max_length=64, description="camera id")] = None,
    zone: Annotated[str | None, Query(max_length=64, description="zone id")] = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(
        description="confirmed at or after (ISO 8601; no offset: the service's display time zone)")] = None,
    until: Annotated[datetime | None, Query(description="confirmed before")] = None,
    q: Annotated[str | None, Query(max_length=100, description="text in case id, camera, address or grid code")] = None,
) -> CaseFilter:
    zone_info = review.settings.display_timezone
    return CaseFilter(status=status_, violation=violation, camera_id=camera, zone_id=zone, assignee=assignee,
                      since=_local_or_422(since, zone_info), until=_local_or_422(until, zone_info), text=q)


def _local_or_422(moment: datetime | None, zone_info: tzinfo) -> datetime | None:
    if moment is None:
        return None
    try:
        return read_local(moment, zone_info)
    except (OverflowError, ValueError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"time {moment} is out of range") from None


@router.get("", response_model=CasePageOut, responses=FORBIDDEN, summary="Cases, newest first, filtered")
def list_cases(
    caller: Reviewer,
    review: Review,
    filters: Annotated[CaseFilter, Depends(case_filter)],
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
) -> CasePageOut:
    return CasePageOut.of(review.store.cases.list_cases(filters, page=page, per_page=per_page))


@router.get("/{case_id}", response_model=CaseDetail, responses=CASE_ERRORS,
            summary="One case with its evidence, notes and audit trail")
def get_case(case_id: CaseId, caller: Reviewer, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.get(case_id))


@router.get("/{case_id}/audit", response_model=list[AuditEntryOut], responses=CASE_ERRORS)
def case_audit(case_id: CaseId, caller: Reviewer, review: Review) -> list[AuditEntryOut]:
    review.store.cases.get(case_id)
    return [AuditEntryOut.of(entry) for entry in review.store.audit.entries(case_id)]


def _decide(review: ReviewServices, caller: Caller, case_id: str, decision: Decision, **fields) -> CaseDetail:
    # Escalating stays open: it is what an officer should do with evidence that does not hold.
    if decision is not Decision.ESCALATE:
        review.refuse_unacknowledged_tampering(review.store.cases.get(case_id))
    return review.case_detail(review.store.cases.decide(case_id, caller.user, decision, **fields))


@router.post("/{case_id}/confirm", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="确认: the violation is real")
def confirm(case_id: CaseId, body: ConfirmIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.CONFIRM, note=body.note)


@router.post("/{case_id}/reject", response_model=CaseDetail, responses={
    **DECISION_ERRORS, 422: {"description": "Reason 'other' without a note"}}, summary="驳回, with a reason")
def reject(case_id: CaseId, body: RejectIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.REJECT, reason=body.reason, note=body.note)


@router.post("/{case_id}/escalate", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="上报: needs a supervisor or another department")
def escalate(case_id: CaseId, body: EscalateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.ESCALATE, note=body.note)


@router.post("/{case_id}/duplicate", response_model=CaseDetail, responses={
    **DECISION_ERRORS, 422: {"description": "duplicate_of names no case, itself, or another duplicate"}},
    summary="重复: the same episode as another case")
def duplicate(case_id: CaseId, body: DuplicateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.DUPLICATE, duplicate_of=body.duplicate_of, note=body.note)


@router.post("/{case_id}/reopen", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="重新打开 a decided case (supervisor)")
def reopen(case_id: CaseId, body: ReopenIn, caller: Supervisor, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.reopen(case_id, caller.user, body.note))


@router.post("/{case_id}/assign", response_model=CaseDetail, responses={
    **CASE_ERRORS, **BAD_BODY, 422: {"description": "Not an officer or supervisor account"}},
    summary="分派 a case to an officer (supervisor)")
def assign(case_id: CaseId, body: AssignIn, caller: Supervisor, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.assign(case_id, caller.user, body.assignee))
