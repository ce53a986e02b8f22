"""The JSON API under /api: cases, evidence, decisions, bundles, cameras, users (OpenAPI at /openapi.json)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.responses import RedirectResponse

from pipeline.review.auth import (
    CAMERA_VIEWERS,
    REVIEWERS,
    Caller,
    api_caller,
    api_roles,
    check_password,
    hash_password,
)
from pipeline.review.bundle import build_bundle
from pipeline.review.schemas import (
    AssignIn,
    AuditEntryOut,
    CameraBoardOut,
    CaseDetail,
    CasePageOut,
    ConfirmIn,
    DuplicateIn,
    EscalateIn,
    LoginIn,
    NewUserIn,
    RejectIn,
    ReopenIn,
    TokenOut,
    UserOut,
    VocabularyOut,
)
from pipeline.review.services import ReviewServices, services
from pipeline.review.store import CaseFilter, NotFound, ReviewCase, now_iso
from pipeline.review.vocabulary import (
    REJECT_REASON_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    VIOLATION_LABELS,
    Decision,
    Role,
    Status,
)

# Times given without an offset are read as the district's clock, as an officer would mean them.
LOCAL_TIMEZONE = ZoneInfo("Asia/Shanghai")
MAX_PAGE = 100_000

router = APIRouter(prefix="/api")
Review = Annotated[ReviewServices, Depends(services)]
Reviewer = Annotated[Caller, Depends(api_roles(*REVIEWERS))]
Supervisor = Annotated[Caller, Depends(api_roles(Role.SUPERVISOR))]
Admin = Annotated[Caller, Depends(api_roles(Role.ADMIN))]
CaseId = Annotated[str, Path(min_length=1, max_length=128, description="A case id, e.g. P-9eaba0802ce114d7")]
UNAUTHORISED = {401: {"description": "No user: log in first"}}
FORBIDDEN = {**UNAUTHORISED, 403: {"description": "This user's role may not do this"}}
CASE_ERRORS = {**FORBIDDEN, 404: {"description": "No such case"}}
BAD_BODY = {400: {"description": "The body is not JSON"}}
DECISION_ERRORS = {**CASE_ERRORS, **BAD_BODY, 409: {"description": "The case is not in a state that allows this"}}


def case_filter(
    status_: Annotated[Status | None, Query(alias="status", description="待审核 new, 已确认 confirmed, …")] = None,
    violation: Annotated[str | None, Query(max_length=64, description="e.g. illegal_parking")] = None,
    camera: Annotated[str | None, Query(max_length=64, description="camera id")] = None,
    zone: Annotated[str | None, Query(max_length=64, description="zone id")] = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="confirmed at or after (ISO 8601; no offset: UTC+8)")] = None,
    until: Annotated[datetime | None, Query(description="confirmed before")] = None,
    q: Annotated[str | None, Query(max_length=100, description="text in case id, camera, address or grid code")] = None,
) -> CaseFilter:
    return CaseFilter(status=status_, violation=violation, camera_id=camera, zone_id=zone, assignee=assignee,
                      since=_aware(since), until=_aware(until), text=q)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_TIMEZONE)
    try:
        aware.timestamp()
    except (OverflowError, ValueError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"time {moment} is out of range") from None
    return aware


def case_detail(review: ReviewServices, case: ReviewCase) -> CaseDetail:
    return CaseDetail.build(case, review.notes.notes(case.case_id), review.store.audit_entries(case.case_id))


@router.post("/login", response_model=TokenOut, responses={**BAD_BODY, 401: {"description": "Wrong name or password"}},
             summary="Exchange a name and password for a bearer token")
def login(body: LoginIn, review: Review) -> TokenOut:
    user = check_password(review, body.name, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong name or password")
    token, session = review.store.create_session(user, review.settings.session_ttl_s)
    return TokenOut(access_token=token, expires_at=session.expires_at, user=UserOut.of(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORISED,
             summary="End this token's session")
def logout(caller: Annotated[Caller, Depends(api_caller)], review: Review) -> Response:
    review.store.end_session(caller.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut, responses=UNAUTHORISED)
def me(caller: Annotated[Caller, Depends(api_caller)]) -> UserOut:
    return UserOut.of(caller.user)


@router.get("/vocabulary", response_model=VocabularyOut, responses=UNAUTHORISED,
            summary="Chinese labels of statuses, violations, reject reasons and roles")
def vocabulary(caller: Annotated[Caller, Depends(api_caller)]) -> VocabularyOut:
    return VocabularyOut(statuses={k.value: v for k, v in STATUS_LABELS.items()}, violations=VIOLATION_LABELS,
                         reject_reasons={k.value: v for k, v in REJECT_REASON_LABELS.items()},
                         roles={k.value: v for k, v in ROLE_LABELS.items()})


@router.get("/cases", response_model=CasePageOut, responses=FORBIDDEN, summary="Cases, newest first, filtered")
def list_cases(
    caller: Reviewer,
    review: Review,
    filters: Annotated[CaseFilter, Depends(case_filter)],
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
) -> CasePageOut:
    return CasePageOut.of(review.store.list_cases(filters, page=page, per_page=per_page))


@router.get("/cases/{case_id}", response_model=CaseDetail, responses=CASE_ERRORS,
            summary="One case with its evidence, notes and audit trail")
def get_case(case_id: CaseId, caller: Reviewer, review: Review) -> CaseDetail:
    return case_detail(review, review.store.get(case_id))


@router.get("/cases/{case_id}/audit", response_model=list[AuditEntryOut], responses=CASE_ERRORS)
def case_audit(case_id: CaseId, caller: Reviewer, review: Review) -> list[AuditEntryOut]:
    review.store.get(case_id)
    return [AuditEntryOut.of(entry) for entry in review.store.audit_entries(case_id)]


@router.get(
    "/cases/{case_id}/evidence/{name}",
    responses={**CASE_ERRORS, 200: {"content": {"image/jpeg": {}, "video/mp4": {}, "application/json": {}},
                                    "description": "The file (local evidence store)"},
               307: {"description": "A short-lived presigned URL (S3 evidence store)"}},
    response_class=Response,
    summary="One evidence file of a case, by its name in the case (frame.jpg, clip.mp4, ...)",
)
def evidence_file(
    case_id: CaseId,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")],
    caller: Reviewer,
    review: Review,
) -> Response:
    case = review.store.get(case_id)
    # The key comes from the case's own record, never from the request: nothing else can be reached.
    item = case.record.evidence.get(name)
    if item is None:
        raise NotFound(f"case {case_id} has no evidence named {name}")
    try:
        url = review.evidence.url_for(item.key, review.settings.evidence_url_expiry_s)
    except KeyError:
        raise NotFound(f"evidence {name} of case {case_id} is missing from the evidence store") from None
    detail = {"name": name, "key": item.key, "recorded_sha256": item.sha256}
    if url is not None:
        review.store.record_event(caller.user.name, "evidence_view", case_id, {**detail, "via": "presigned"})
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT,
                                headers={"Cache-Control": "private, no-store"})
    try:
        data = review.evidence.get(item.key)
    except KeyError:
        raise NotFound(f"evidence {name} of case {case_id} is missing from the evidence store") from None
    actual = hashlib.sha256(data).hexdigest()
    review.store.record_event(caller.user.name, "evidence_view", case_id, {**detail, "intact": actual == item.sha256})
    # no-store: every look at the evidence reaches the server and so the audit trail.
    return Response(data, media_type=item.content_type,
                    headers={"Cache-Control": "private, no-store", "X-Evidence-Sha256": actual,
                             "X-Evidence-Intact": str(actual == item.sha256).lower()})


@router.get("/cases/{case_id}/bundle", response_class=Response, responses={
    **CASE_ERRORS, 200: {"content": {"application/zip": {}}, "description": "Evidence, case, audit, checksums"}},
    summary="Export the case as a zip (evidence + metadata + audit entries + SHA256SUMS)")
def export_bundle(case_id: CaseId, caller: Reviewer, review: Review) -> Response:
    case = review.store.get(case_id)
    exported_at = now_iso()
    review.store.record_event(caller.user.name, "bundle_export", case_id,
                              {"files": sorted(case.record.evidence), "exported_at": exported_at})
    archive = build_bundle(case, review.evidence, review.store.audit_entries(case_id),
                           review.notes.notes(case_id), exported_by=caller.user.name, exported_at=exported_at)
    filename = f"{case_id}-bundle.zip"
    return Response(archive, media_type="application/zip", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "Cache-Control": "private, no-store"})


def _decide(review: ReviewServices, caller: Caller, case_id: str, decision: Decision, **fields) -> CaseDetail:
    return case_detail(review, review.store.decide(case_id, caller.user, decision, **fields))


@router.post("/cases/{case_id}/confirm", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="确认: the violation is real")
def confirm(case_id: CaseId, body: ConfirmIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.CONFIRM, note=body.note)


@router.post("/cases/{case_id}/reject", response_model=CaseDetail, responses={
    **DECISION_ERRORS, 422: {"description": "Reason 'other' without a note"}}, summary="驳回, with a reason")
def reject(case_id: CaseId, body: RejectIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.REJECT, reason=body.reason, note=body.note)


@router.post("/cases/{case_id}/escalate", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="上报: needs a supervisor or another department")
def escalate(case_id: CaseId, body: EscalateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.ESCALATE, note=body.note)


@router.post("/cases/{case_id}/duplicate", response_model=CaseDetail, responses={
    **DECISION_ERRORS, 422: {"description": "duplicate_of names no case, itself, or another duplicate"}},
    summary="重复: the same episode as another case")
def duplicate(case_id: CaseId, body: DuplicateIn, caller: Reviewer, review: Review) -> CaseDetail:
    return _decide(review, caller, case_id, Decision.DUPLICATE, duplicate_of=body.duplicate_of, note=body.note)


@router.post("/cases/{case_id}/reopen", response_model=CaseDetail, responses=DECISION_ERRORS,
             summary="重新打开 a decided case (supervisor)")
def reopen(case_id: CaseId, body: ReopenIn, caller: Supervisor, review: Review) -> CaseDetail:
    return case_detail(review, review.store.reopen(case_id, caller.user, body.note))


@router.post("/cases/{case_id}/assign", response_model=CaseDetail, responses={
    **CASE_ERRORS, **BAD_BODY, 422: {"description": "Not an officer or supervisor account"}},
    summary="分派 a case to an officer (supervisor)")
def assign(case_id: CaseId, body: AssignIn, caller: Supervisor, review: Review) -> CaseDetail:
    return case_detail(review, review.store.assign(case_id, caller.user, body.assignee))


@router.get("/cameras", response_model=CameraBoardOut, responses=FORBIDDEN,
            summary="Cameras with live state and health from the workers' /metrics")
def cameras(caller: Annotated[Caller, Depends(api_roles(*CAMERA_VIEWERS))], review: Review) -> CameraBoardOut:
    return CameraBoardOut.of(review.cameras.snapshot())


@router.get("/users", response_model=list[UserOut], responses=FORBIDDEN)
def users(caller: Admin, review: Review) -> list[UserOut]:
    return [UserOut.of(user) for user in review.store.users()]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED,
             responses={**FORBIDDEN, **BAD_BODY, 409: {"description": "The name is taken"}})
def add_user(body: NewUserIn, caller: Admin, review: Review) -> UserOut:
    return UserOut.of(review.store.add_user(body.name, body.role, hash_password(body.password),
                                            actor=caller.user.name))

