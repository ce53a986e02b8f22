"""The officers' web page: server-rendered Jinja2 with a small script for keyboard triage.

Reading is plain GET pages; deciding goes through the JSON API from the page's script, with the
session cookie and the session's CSRF token in a header. Text is Chinese; values stay English.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from pipeline.review.auth import (
    CAMERA_VIEWERS,
    CSRF_FORM_FIELD,
    REVIEWERS,
    SESSION_COOKIE,
    Caller,
    LoginRefused,
    change_password,
    client_address,
    hash_password,
    log_in,
    page_caller,
    page_roles,
    page_session,
    same_origin,
)
from pipeline.review.cameras import PlaceNames
from pipeline.review.cases import CaseFilter
from pipeline.review.claims import ClaimScope
from pipeline.review.errors import Conflict, Invalid
from pipeline.review.local_time import read_local, show_clock, show_local
from pipeline.review.routers.case_map import build_map
from pipeline.review.routers.stats import Period, stats_for
from pipeline.review.schemas import CameraBoardOut, CaseChangesOut, CasePageOut
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import (
    ACTION_LABELS,
    OVERDUE_LABEL,
    PLATE_COLOUR_LABELS,
    RECHECK_FAILED_LABEL,
    REJECT_REASON_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    VIOLATION_LABELS,
    AccountRole,
    RejectReason,
    Status,
    clip_coverage,
)
from pipeline.review.workflow import open_steps

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "web" / "templates")
PER_PAGE = 24
FILTER_KEYS = ("status", "violation", "camera", "zone", "since", "until", "q", "claim", "recheck")
RECHECK_FAILED = "failed"  # the list's ?recheck=failed: only 复核未通过 cases

router = APIRouter(include_in_schema=False)
Review = Annotated[ReviewServices, Depends(services)]


def _display_timezone(request: Request) -> tzinfo:
    return request.app.state.review.settings.display_timezone


@pass_context
def _local_time(context: Context, iso: str | None) -> str:
    # The zone is the serving app's setting, so the filter reaches it through the template's request.
    return show_local(iso, _display_timezone(context["request"]))


@pass_context
def _local_clock(context: Context, iso: str) -> str:
    return show_clock(datetime.fromisoformat(iso), _display_timezone(context["request"]))


def _place_names(context: Context) -> PlaceNames:
    return context["request"].app.state.review.cameras.place_names


@pass_context
def _camera_name(context: Context, camera_id: str) -> str:
    return _place_names(context).camera(camera_id)


@pass_context
def _zone_name(context: Context, zone_id: str, camera_id: str | None = None) -> str:
    # A camera-fault case has no zone.
    return _place_names(context).zone(zone_id, camera_id) if zone_id else "—"


TEMPLATES.env.filters.update(local_time=_local_time, local_clock=_local_clock, camera_name=_camera_name,
                             zone_name=_zone_name)
TEMPLATES.env.globals.update(status_labels={s.value: label for s, label in STATUS_LABELS.items()},
                             overdue_label=OVERDUE_LABEL, recheck_failed_label=RECHECK_FAILED_LABEL,
                             violation_labels=VIOLATION_LABELS, action_labels=ACTION_LABELS,
                             reject_reasons={r.value: label for r, label in REJECT_REASON_LABELS.items()},
                             role_labels={r.value: label for r, label in ROLE_LABELS.items()},
                             clip_coverage=clip_coverage, csrf_field=CSRF_FORM_FIELD)
TEMPLATES.env.globals["plate_colours"] = {colour.value: label for colour, label in PLATE_COLOUR_LABELS.items()}


def _render(request: Request, template: str, caller: Caller | None, status_code: int = 200, **context) -> Response:
    review: ReviewServices = request.app.state.review
    # 姓名 by login name, for every page that names a person (assignees, claims, the audit trail)
    people = {account.name: account.label for account in review.store.accounts.users()} if caller else {}
    return TEMPLATES.TemplateResponse(request, template, {
        "user": caller.user if caller else None,
        "people": people,
        "csrf_token": caller.session.csrf_token if caller else "",
        "queue_error": review.intake.last_error,
        "set_aside": review.intake.set_aside,
        **context,
    }, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> Response:
    return _render(request, "error.html", None, status_code=status_code, status_code_=status_code, message=message)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return _render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login_form(request: Request, review: Review, name: Annotated[str, Form(max_length=64)],
               password: Annotated[str, Form(max_length=1024)], next: Annotated[str, Form()] = "/") -> Response:
    target = _safe_next(next)
    if not same_origin(request):
        return error_page(request, 403, "拒绝来自其他网站的登录请求")
    try:
        user = log_in(review, name, password, client_address(request))
    except LoginRefused as refused:
        page = _render(request, "login.html", None, status_code=refused.status_code, next=target, error=refused.message)
        page.headers.update(refused.headers)
        return page
    if user is None:
        return _render(request, "login.html", None, status_code=401, next=target, error="用户名或密码错误")
    token, _ = review.store.accounts.create_session(user, review.settings.session_ttl_s)
    if user.role is AccountRole.ADMIN and target == "/":
        target = "/cameras"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(review.settings.session_ttl_s), httponly=True,
                        samesite="strict", secure=review.settings.secure_cookies, path="/")
    return response


@router.post("/logout")
def logout_form(caller: Annotated[Caller, Depends(page_session)], review: Review) -> Response:
    review.store.accounts.end_session(caller.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, caller: Annotated[Caller, Depends(page_session)]) -> Response:
    return _render(request, "password.html", caller, error=None)


@router.post("/password", response_class=HTMLResponse)
def password_form(request: Request, caller: Annotated[Caller, Depends(page_session)], review: Review,
                  current: Annotated[str, Form(max_length=1024)], new: Annotated[str, Form(max_length=1024)],
                  again: Annotated[str, Form(max_length=1024)]) -> Response:
    if new != again:
        return _render(request, "password.html", caller, status_code=400, error="两次输入的新密码不一致")
    try:
        change_password(review, caller, current, new, client_address(request))
    except (Invalid, ValueError) as exc:
        return _render(request, "password.html", caller, status_code=400, error=str(exc))
    except LoginRefused as refused:
        page = _render(request, "password.html", caller, status_code=refused.status_code, error=refused.message)
        page.headers.update(refused.headers)
        return page
    return RedirectResponse("/", status_code=303)


@router.get("/", response_class=HTMLResponse)
def case_list(request: Request, caller: Annotated[Caller, Depends(page_caller)], review: Review,
              page: int = 1) -> Response:
    if caller.user.role not in REVIEWERS:
        return RedirectResponse("/cameras", status_code=303)
    filters, values = _page_filter(request, caller)
    page = min(max(page, 1), 100_000)
    cases = review.store.cases
    found = CasePageOut.of(cases.list_cases(filters, page=page, per_page=PER_PAGE))
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return _render(request, "cases.html", caller, page=found, filters=values, query=query,
                   cameras=cases.distinct("camera_id"), zones=cases.distinct("zone_id"),
                   violations=sorted(set(VIOLATION_LABELS) | set(cases.distinct("violation"))))


@router.get("/list/changes", response_class=HTMLResponse)
def list_changes(request: Request, caller: Annotated[Caller, Depends(page_roles(*REVIEWERS))], review: Review,
                 after: int = 0) -> Response:
    """The list's cards that changed after the cursor ``after``, rendered as the list renders them, for
    the list's script to put in place (review.js) without a reload."""
    filters, values = _page_filter(request, caller)
    changes = CaseChangesOut.of(review.store.cases.changes(max(after, 0), filters))
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return _render(request, "case_changes.html", caller, changes=changes, query=query)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str, caller: Annotated[Caller, Depends(page_roles(*REVIEWERS))],
              review: Review) -> Response:
    case = review.store.cases.get(case_id)
    detail = review.case_detail(case)
    filters, values = _page_filter(request, caller)
    query = urlencode({k: v for k, v in values.items() if v is not None})
    around = review.store.cases.neighbours(case_id, filters)
    accounts = review.store.accounts.users()  # also _render's people
    done = request.query_params.get("done")
    return _render(
        request, "case.html", caller, case=detail, query=query, evidence={item.name: item for item in detail.evidence},
        newer_url=f"/cases/{around.newer}?{query}" if around.newer else None,
        older_url=f"/cases/{around.older}?{query}" if around.older else None,
        done=done, done_action=request.query_params.get("did"),
        is_supervisor=caller.user.role is AccountRole.SUPERVISOR,
        assignable=[user.name for user in accounts if user.role in REVIEWERS and user.active],
        reasons=list(RejectReason), claim_s=review.settings.claim_s, timezone=str(_display_timezone(request)),
        loop_steps=open_steps(case.status, caller.user.role, case.loop), units=review.workflow.units,
        disposal_recheck=case.loop.recheck_of_disposal if case.loop else None)


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, caller: Annotated[Caller, Depends(page_roles(*REVIEWERS))], review: Review,
               period: Period) -> Response:
    values = {key: request.query_params.get(key) or None for key in ("since", "until")}
    query = urlencode({key: value for key, value in values.items() if value})
    return _render(request, "stats.html", caller, stats=stats_for(caller, review, period), filters=values,
                   query=query)


@router.get("/cameras", response_class=HTMLResponse)
def camera_page(request: Request, caller: Annotated[Caller, Depends(page_roles(*CAMERA_VIEWERS))],
                review: Review) -> Response:
    return _render(request, "cameras.html", caller, board=CameraBoardOut.of(review.cameras.snapshot()))


@router.get("/map", response_class=HTMLResponse)
def map_page(request: Request, caller: Annotated[Caller, Depends(page_caller)], review: Review) -> Response:
    """地图 (static/map.js draws it from the figures the page carries, and keeps them current)."""
    violation = (request.query_params.get("violation") or "")[:64] or None
    overdue = request.query_params.get("overdue") in ("1", "true", "on")
    figures = build_map(caller, review, violation=violation, overdue_only=overdue)
    kinds = sorted(set(VIOLATION_LABELS) | set(review.store.cases.distinct("violation")))
    return _render(request, "map.html", caller, figures=figures, violations=kinds,
                   filters={"violation": violation, "overdue": overdue})


Admin = Annotated[Caller, Depends(page_roles(AccountRole.ADMIN))]
Profile = Annotated[str, Form(max_length=64)]


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, caller: Admin, review: Review) -> Response:
    return _users_page(request, caller, review)


@router.post("/users", response_class=HTMLResponse)
def users_form(request: Request, caller: Admin, review: Review, name: Annotated[str, Form(max_length=64)],
               role: Annotated[AccountRole, Form()], password: Annotated[str, Form(max_length=1024)],
               display_name: Profile = "", badge_number: Profile = "") -> Response:
    try:
        review.store.accounts.add_user(name, role, hash_password(password), actor=caller.user.name,
                                       display_name=display_name, badge_number=badge_number)
    except (Conflict, Invalid, ValueError) as exc:
        return _users_page(request, caller, review, error=str(exc))
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{name}/profile", response_class=HTMLResponse)
def profile_form(request: Request, name: str, caller: Admin, review: Review, display_name: Profile = "",
                 badge_number: Profile = "") -> Response:
    try:
        review.store.accounts.set_profile(name, display_name, badge_number, actor=caller.user.name)
    except (Conflict, Invalid) as exc:
        return _users_page(request, caller, review, error=str(exc))
    return RedirectResponse("/users", status_code=303)


def _users_page(request: Request, caller: Caller, review: ReviewServices, error: str | None = None) -> Response:
    return _render(request, "users.html", caller, status_code=422 if error else 200,
                   users=review.store.accounts.users(), roles=list(AccountRole), error=error)


def _page_filter(request: Request, caller: Caller) -> tuple[CaseFilter, dict[str, str | None]]:
    """The list's filter from the query string, leniently (a page never answers 422 for a stale link);
    the claim filter's "mine" is the caller's.

    No ``status`` at all means 待审核 (the triage view); ``status=`` (empty) means every status.
    """
    params = request.query_params
    zone = _display_timezone(request)
    values = {key: (params.get(key) or None) for key in FILTER_KEYS}
    if "status" not in params:
        values["status"] = Status.NEW.value
    if values["status"] not in {s.value for s in Status}:
        values["status"] = ""
    if values["claim"] not in {scope.value for scope in ClaimScope}:
        values["claim"] = None
    if values["recheck"] != RECHECK_FAILED:
        values["recheck"] = None
    for key in ("since", "until"):
        if values[key] is not None and _parse_local(values[key], zone) is None:
            values[key] = None
    filters = CaseFilter(
        status=Status(values["status"]) if values["status"] else None, violation=values["violation"],
        camera_id=values["camera"], zone_id=values["zone"], since=_parse_local(values["since"], zone),
        until=_parse_local(values["until"], zone), text=(values["q"] or "")[:100] or None,
        claim=ClaimScope(values["claim"]) if values["claim"] else None, viewer=caller.user.name,
        recheck_failed=values["recheck"] == RECHECK_FAILED)
    return filters, values


def _parse_local(text: str | None, zone: tzinfo) -> datetime | None:
    if not text:
        return None
    try:
        return read_local(datetime.fromisoformat(text), zone)
    except (ValueError, OverflowError):
        return None


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to another one."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"

