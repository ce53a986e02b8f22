"""What the API's routers share: the services, who may call each route, the case id in a path,
and the error answers the routes document."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from pipeline.review.auth import CAMERA_VIEWERS, REVIEWERS, Caller, api_caller, api_roles
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import AccountRole

Review = Annotated[ReviewServices, Depends(services)]
AnyUser = Annotated[Caller, Depends(api_caller)]
Reviewer = Annotated[Caller, Depends(api_roles(*REVIEWERS))]
Supervisor = Annotated[Caller, Depends(api_roles(AccountRole.SUPERVISOR))]
CameraViewer = Annotated[Caller, Depends(api_roles(*CAMERA_VIEWERS))]
Admin = Annotated[Caller, Depends(api_roles(AccountRole.ADMIN))]
CaseId = Annotated[str, Path(min_length=1, max_length=128, description="A case id, e.g. P-9eaba0802ce114d7")]

UNAUTHORISED = {401: {"description": "No user: log in first"}}
FORBIDDEN = {**UNAUTHORISED, 403: {"description": "This user's role may not do this"}}
CASE_ERRORS = {**FORBIDDEN, 404: {"description": "No such case"}}
BAD_BODY = {400: {"description": "The body is not JSON"}}
DECISION_ERRORS = {**CASE_ERRORS, **BAD_BODY, 409: {"description": "The case is not in a state that allows this"}}
