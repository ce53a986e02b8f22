"""The case list and its changes, one case with its audit trail, claims on a case, and the decisions on it."""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from pipeline.review.auth import Caller
from pipeline.review.cases import CaseFilter
from pipeline.review.claims import ClaimScope
from pipeline.review.local_time import read_local
from pipeline.review.routers.dependencies import (
    CASE_ERRORS,
    DECISION_ERRORS,
    FORBIDDEN,
    CaseId,
    Review,
    Reviewer,
    Supervisor,
    bad_request,
    refusal,
)
from pipeline.review.schemas import (
    AssignIn,
    AuditEntryOut,
    CaseChangesOut,
    CaseClaimOut,
    CaseDetail,
    CasePageOut,
    ClaimIn,
    ClaimOut,
    ConfirmIn,
    DecisionIn,
    DuplicateIn,
    EscalateIn,
    RejectIn,
    ReopenIn,
)
from pipeline.review.services import ReviewServices
from pipeline.review.vocabulary import Decision, Status

MAX_PAGE = 100_000
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

router = APIRouter(prefix="/cases", tags=["cases"])


def _iso_8601_only(value: object) -> object:
    # pydantic also reads a bare number as Unix time: in a time filter that is far likelier a slip.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date or time, such as 2026-03-02 or 2026-03-02T08:00")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_8601_only)]


def case_filter(
    review: Review,
    caller: Reviewer,
    status_: Annotated[Status | None, Query(alias="status", description="待审核 new, 已确认 confirmed, …")] = None,
    violation: Annotated[str | None, Query(max_length=64, description="e.g. illegal_parking")] = None,
    camera: Annotated[str | None, Query(max_length=64, description="camera id")] = None,
    zone: Annotated[str | None, Query(max_length=64, description="zone id")] = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[IsoTime | None, Query(
        description="confirmed at or after (ISO 8601; no offset: the service's display time zone)")] = None,
    until: Annotated[IsoTime | None, Query(description="confirmed before (ISO 8601)")] = None,
    q: Annotated[str | None, Query(max_length=100, description="text in case id, camera, address or grid code")] = None,
    claim: Annotated[ClaimScope | None, Query(
        description="认领: mine (held by you), unclaimed (held by nobody now), others (held by someone else)")] = None,
    overdue: Annotated[bool, Query(description="true: only 超期 cases, dispatched and past their deadline now")] = False,
    recheck_failed: Annotated[bool, Query(description="true: only 复核未通过 cases, whose latest camera recheck "
                                          "found the violation still there past its deadline")] = False,
) -> CaseFilter:
    zone_info = review.settings.display_timezone
    return CaseFilter(status=status_, violation=violation, camera_id=camera, zone_id=zone, assignee=assignee,
                      since=local_or_422("since", since, zone_info), until=local_or_422("until", until, zone_info),
                      text=q, claim=claim, viewer=caller.user.name, overdue=overdue, recheck_failed=recheck_failed)


def local_or_422(parameter: str, moment: datetime | None, zone_info: tzinfo) -> datetime | None:
    if moment is None:
        return None
    try:
        return read_local(moment, zone_info)
    except (OverflowError, ValueError):
        # Out of range only on the district's clock, so after validation; answered as validation is.
        raise RequestValidationError([{"type": "value_error", "loc": ("query", parameter),
                                       "msg": f"time {moment} is out of range", "input": str(moment)}]) from None


@router.get("", response_model=CasePageOut, responses=FORBIDDEN, summary="Cases, newest first, filtered")
def list_cases(
    caller: Reviewer,
    review: Review,
    filters: Annotated[CaseFilter, Depends(case_filter)],
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
) -> CasePageOut:
    return CasePageOut.of(review.store.cases.list_cases(filters, page=page, per_page=per_page))


@router.get("/changes", response_model=CaseChangesOut, responses=FORBIDDEN,
            summary="What changed after a cursor (a list's cursor, or the last answer's), for a list that polls")
def case_changes(
    caller: Reviewer,
    review: Review,
    filters: Annotated[CaseFilter, Depends(case_filter)],
    after: Annotated[int, Query(ge=0, le=2**63 - 1,  # SQLite's integers
                                description="A cursor (an audit seq): CasePageOut.cursor, then the last "
                                            "answer's CaseChangesOut.cursor")],
) -> CaseChangesOut:
    return CaseChangesOut.of(review.store.cases.changes(after, filters))


@router.get("/{case_id}", response_model=CaseDetail, responses=CASE_ERRORS,
            summary="One case with its evidence, notes and audit trail")
def get_case(case_id: CaseId, caller: Reviewer, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.get(case_id))


@router.get("/{case_id}/audit", response_model=list[AuditEntryOut], responses=CASE_ERRORS)
def case_audit(case_id: CaseId, caller: Reviewer, review: Review) -> list[AuditEntryOut]:
    review.store.cases.get(case_id)
    return [AuditEntryOut.of(entry) for entry in review.store.audit.entries(case_id)]


CLAIM_ERRORS = {**CASE_ERRORS, **bad_request(), **refusal(
    409, "The case is decided, or someone else holds it (code case_claimed): the detail says who, until when")}


@router.post("/{case_id}/claim", response_model=CaseClaimOut, responses=CLAIM_ERRORS,
             summary="认领: hold a new case for a while, so nobody else decides it; the holder's claim is renewed")
def claim(case_id: CaseId, body: ClaimIn, caller: Reviewer, review: Review) -> CaseClaimOut:
    held = review.store.claims.claim(case_id, caller.user, duration_s=review.settings.claim_s,
                                     takeover=body.takeover)
    return CaseClaimOut(case_id=case_id, claim=ClaimOut.of(held))


@router.post("/{case_id}/release", response_model=CaseClaimOut, responses={**CASE_ERRORS, **refusal(
    409, "Someone else holds the case (code case_claimed)")}, summary="释放认领: the case is free for others again")
def release(case_id: CaseId, caller: Reviewer, review: Review) -> CaseClaimOut:
    review.store.claims.release(case_id, caller.user)
    return CaseClaimOut(case_id=case_id, claim=None)


def _decide(review: ReviewServices, caller: Caller, case_id: str, decision: Decision, body: DecisionIn,
            **fields) -> CaseDetail:
    return review.case_detail(review.decide(caller.user, case_id, decision, version=body.version, **fields))


@router.post("/{case_id}/confirm", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="确认: the violation is real")
def confirm(case_id: CaseId, body: ConfirmIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.CONFIRM, body, note=body.note)


@router.post("/{case_id}/reject", response_model=CaseDetail, responses={
    **DECISION_ERRORS, **bad_request("the reason is 'other' without a note")}, summary="驳回, with a reason")
def reject(case_id: CaseId, body: RejectIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.REJECT, body, reason=body.reason, note=body.note)


@router.post("/{case_id}/escalate", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="上报: needs a supervisor or another department")
def escalate(case_id: CaseId, body: EscalateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.ESCALATE, body, note=body.note)


@router.post("/{case_id}/duplicate", response_model=CaseDetail, responses={
    **DECISION_ERRORS, **bad_request("duplicate_of names no case, itself, or another duplicate")},
    summary="重复: the same episode as another case")
def duplicate(case_id: CaseId, body: DuplicateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.DUPLICATE, body, duplicate_of=body.duplicate_of, note=body.note)


@router.post("/{case_id}/reopen", response_model=CaseDetail, responses={
    **DECISION_ERRORS, **bad_request("the note is only blanks")}, summary="重新打开 a decided case (supervisor)")
def reopen(case_id: CaseId, body: ReopenIn, caller: Supervisor, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.reopen(case_id, caller.user, body.note,
                                                        expected_version=body.version))


@router.post("/{case_id}/assign", response_model=CaseDetail, responses={
    **CASE_ERRORS, **bad_request("the assignee is no officer or supervisor account, or a disabled one")},
    summary="分派 a case to an officer (supervisor)")
def assign(case_id: CaseId, body: AssignIn, caller: Supervisor, review: Review) -> CaseDetail:
    return review.case_detail(review.store.cases.assign(case_id, caller.user, body.assignee))
