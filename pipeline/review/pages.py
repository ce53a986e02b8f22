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
from pipeline.review.cases import CaseFilter
from pipeline.review.errors import Conflict, Invalid
from pipeline.review.local_time import read_local, show_local
from pipeline.review.schemas import CameraBoardOut, CasePageOut
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import (
    ACTION_LABELS,
    REJECT_REASON_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    VIOLATION_LABELS,
    AccountRole,
    RejectReason,
    Status,
)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "web" / "templates")
PER_PAGE = 24
FILTER_KEYS = ("status", "violation", "camera", "zone", "since", "until", "q")

router = APIRouter(include_in_schema=False)
Review = Annotated[ReviewServices, Depends(services)]


def _display_timezone(request: Request) -> tzinfo:
    return request.app.state.review.settings.display_timezone


@pass_context
def _local_time(context: Context, iso: str | None) -> str:
    # The zone is the serving app's setting, so the filter reaches it through the template's request.
    return show_local(iso, _display_timezone(context["request"]))


TEMPLATES.env.filters["local_time"] = _local_time
TEMPLATES.env.globals.update(status_labels={s.value: label for s, label in STATUS_LABELS.items()},
                             violation_labels=VIOLATION_LABELS, action_labels=ACTION_LABELS,
                             reject_reasons={r.value: label for r, label in REJECT_REASON_LABELS.items()},
                             role_labels={r.value: label for r, label in ROLE_LABELS.items()},
                             csrf_field=CSRF_FORM_FIELD)


def _render(request: Request, template: str, caller: Caller | None, status_code: int = 200, **context) -> Response:
    review: ReviewServices = request.app.state.review
    return TEMPLATES.TemplateResponse(request, template, {
        "user": caller.user if caller else None,
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
        return error_page(request, 403, "login from another site refused")
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
    filters, values = _page_filter(request)
    page = min(max(page, 1), 100_000)
    cases = review.store.cases
    found = CasePageOut.of(cases.list_cases(filters, page=page, per_page=PER_PAGE))
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return _render(request, "cases.html", caller, page=found, filters=values, query=query,
                   cameras=cases.distinct("camera_id"), zones=cases.distinct("zone_id"),
                   violations=sorted(set(VIOLATION_LABELS) | set(cases.distinct("violation"))))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str, caller: Annotated[Caller, Depends(page_roles(*REVIEWERS))],
              review: Review) -> Response:
    detail = review.case_detail(review.store.cases.get(case_id))
    filters, values = _page_filter(request)
    query = urlencode({k: v for k, v in values.items() if v is not None})
    around = review.store.cases.neighbours(case_id, filters)
    done = request.query_params.get("done")
    return _render(
        request, "case.html", caller, case=detail, query=query, evidence={item.name: item for item in detail.evidence},
        newer_url=f"/cases/{around.newer}?{query}" if around.newer else None,
        older_url=f"/cases/{around.older}?{query}" if around.older else None,
        done=done, done_action=request.query_params.get("did"),
        is_supervisor=caller.user.role is AccountRole.SUPERVISOR,
        assignable=[user.name for user in review.store.accounts.users() if user.role in REVIEWERS and user.active],
        reasons=list(RejectReason))


@router.get("/cameras", response_class=HTMLResponse)
def camera_page(request: Request, caller: Annotated[Caller, Depends(page_roles(*CAMERA_VIEWERS))],
                review: Review) -> Response:
    return _render(request, "cameras.html", caller, board=CameraBoardOut.of(review.cameras.snapshot()))


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, caller: Annotated[Caller, Depends(page_roles(AccountRole.ADMIN))],
               review: Review) -> Response:
    return _render(request, "users.html", caller, users=review.store.accounts.users(), roles=list(AccountRole),
                   error=None)


@router.post("/users", response_class=HTMLResponse)
def users_form(request: Request, caller: Annotated[Caller, Depends(page_roles(AccountRole.ADMIN))], review: Review,
               name: Annotated[str, Form(max_length=64)], role: Annotated[AccountRole, Form()],
               password: Annotated[str, Form(max_length=1024)]) -> Response:
    try:
        review.store.accounts.add_user(name, role, hash_password(password), actor=caller.user.name)
    except (Conflict, Invalid, ValueError) as exc:
        return _render(request, "users.html", caller, status_code=422, users=review.store.accounts.users(),
                       roles=list(AccountRole), error=str(exc))
    return RedirectResponse("/users", status_code=303)


def _page_filter(request: Request) -> tuple[CaseFilter, dict[str, str | None]]:
    """The list's filter from the query string, leniently (a page never answers 422 for a stale link).

    No ``status`` at all means 待审核 (the triage view); ``status=`` (empty) means every status.
    """
    params = request.query_params
    zone = _display_timezone(request)
    values = {key: (params.get(key) or None) for key in FILTER_KEYS}
    if "status" not in params:
        values["status"] = Status.NEW.value
    if values["status"] not in {s.value for s in Status}:
        values["status"] = ""
    for key in ("since", "until"):
        if values[key] is not None and _parse_local(values[key], zone) is None:
            values[key] = None
    filters = CaseFilter(
        status=Status(values["status"]) if values["status"] else None, violation=values["violation"],
        camera_id=values["camera"], zone_id=values["zone"], since=_parse_local(values["since"], zone),
        until=_parse_local(values["until"], zone), text=(values["q"] or "")[:100] or None)
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

