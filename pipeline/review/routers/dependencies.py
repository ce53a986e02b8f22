"""What the API's routers share: the services, who may call each route, the case id and user name
in a path, and the error answers the routes document.

Every refusal is ``{"detail": "<message>"}`` (ErrorOut) under the status that says what kind it
is; 422 is only FastAPI's own answer to a request that fails validation, which it documents."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Path

from pipeline.review.accounts import USER_NAME_PATTERN
from pipeline.review.auth import CAMERA_VIEWERS, REVIEWERS, Caller, api_caller, api_roles, api_session
from pipeline.review.schemas import ErrorOut
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import AccountRole

Review = Annotated[ReviewServices, Depends(services)]
LoggedIn = Annotated[Caller, Depends(api_session)]  # also a user who must change their password first
AnyUser = Annotated[Caller, Depends(api_caller)]
Reviewer = Annotated[Caller, Depends(api_roles(*REVIEWERS))]
Supervisor = Annotated[Caller, Depends(api_roles(AccountRole.SUPERVISOR))]
CameraViewer = Annotated[Caller, Depends(api_roles(*CAMERA_VIEWERS))]
Admin = Annotated[Caller, Depends(api_roles(AccountRole.ADMIN))]
CaseId = Annotated[str, Path(min_length=1, max_length=128, description="A case id, e.g. P-9eaba0802ce114d7")]
UserName = Annotated[str, Path(pattern=USER_NAME_PATTERN.pattern, description="An account's name, e.g. wang.wu")]


def refusal(status_code: int, description: str) -> dict[int | str, dict[str, Any]]:
    """A documented error answer of a route, with its ErrorOut body."""
    return {status_code: {"model": ErrorOut, "description": description}}


def bad_request(rule: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The 400 of a route with a body: a body that cannot be read at all (not UTF-8), or, given
    ``rule``, a request that breaks that business rule."""
    return refusal(400, "The body cannot be read" + (f", or {rule}" if rule else ""))


UNAUTHORISED = refusal(401, "No user: log in first")
FORBIDDEN = {**UNAUTHORISED, **refusal(403, "This user's role may not do this, or their reset password must be "
                                            "changed first")}
CASE_ERRORS = {**FORBIDDEN, **refusal(404, "No such case")}
DECISION_ERRORS = {**CASE_ERRORS, **bad_request(), **refusal(
    409, "The case is not in a state that allows this: decided already, held by someone else (code case_claimed), "
         "or changed since the version sent (code case_changed); the detail says what to do")}
# Exports and evidence are fetched anew each time: every look reaches the server and so the audit trail.
NO_STORE = {"Cache-Control": "private, no-store"}


def download_headers(file_name: str, *, inline: bool = False) -> dict[str, str]:
    """An export's headers: never cached, saved as ``file_name`` (RFC 5987, so any name survives);
    ``inline``: the browser shows it (a PDF to print) instead of saving it."""
    disposition = "inline" if inline else "attachment"
    return {**NO_STORE, "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(file_name, safe='')}"}
