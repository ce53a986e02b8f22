"""The 处置流程 of a confirmed case (workflow.py): 立案, 派遣, 上报处置, 核查, 结案, and the table of units.

Who may take which step is the state machine's table (workflow.TRANSITIONS), which these routes'
dependencies are made from: officers (and supervisors) file; only officers report a disposal, so
that whoever verifies it never reported it; supervisors dispatch, re-dispatch an overdue case,
verify or send back, and close, since those commit another unit's time and judge its work. A step
the case's state does not allow is refused 409 with a Chinese ``detail`` naming the state and
what to do next.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import BaseModel, Field

from pipeline.review.auth import Caller, api_roles
from pipeline.review.errors import Invalid
from pipeline.review.local_time import read_local
from pipeline.review.photos import MAX_PHOTO_BYTES, MAX_PHOTOS
from pipeline.review.routers.dependencies import (
    CASE_ERRORS,
    FORBIDDEN,
    CaseId,
    Review,
    Reviewer,
    bad_request,
    refusal,
)
from pipeline.review.schemas import NOTE_MAX, CaseDetail
from pipeline.review.workflow import MAX_DEADLINE, TRANSITIONS, Step, WorkflowConfig

router = APIRouter(tags=["workflow"])


def _allowed_to(*steps: Step) -> object:
    return Depends(api_roles(*sorted(frozenset().union(*(TRANSITIONS[step].roles for step in steps)))))


Filer = Annotated[Caller, _allowed_to(Step.FILE)]
Dispatcher = Annotated[Caller, _allowed_to(Step.DISPATCH, Step.REDISPATCH)]
Disposer = Annotated[Caller, _allowed_to(Step.DISPOSE)]
Verifier = Annotated[Caller, _allowed_to(Step.VERIFY, Step.SEND_BACK)]
Closer = Annotated[Caller, _allowed_to(Step.CLOSE)]

WRONG_STATE = refusal(409, "The case's state does not allow this step; the detail names the state and the next step")
STEP_ERRORS = {**CASE_ERRORS, **WRONG_STATE, **bad_request()}


class NoteIn(BaseModel):
    note: str = Field("", max_length=NOTE_MAX)


class DispatchIn(BaseModel):
    unit: str = Field(min_length=1, max_length=64, description="A unit's id from GET /api/workflow/units")
    deadline: datetime | None = Field(
        None, description="Overrides the deadline of the violation's kind; ISO 8601, read on the district's clock "
                          f"without an offset; later than now and within {MAX_DEADLINE.days} days")
    note: str = Field("", max_length=NOTE_MAX)


class VerifyIn(BaseModel):
    accept: bool = Field(description="true: 核查通过; false: 核查退回 to the unit, under a fresh deadline")
    note: str = Field("", max_length=NOTE_MAX, description="Required when sending back: what is still wrong.")


@router.post("/cases/{case_id}/file", response_model=CaseDetail, responses=STEP_ERRORS,
             summary="立案: a confirmed case gets its case number (officer or supervisor)")
def file_case(case_id: CaseId, body: NoteIn, caller: Filer, review: Review) -> CaseDetail:
    return review.case_detail(review.steps.file(case_id, caller.user, body.note))


@router.post("/cases/{case_id}/dispatch", response_model=CaseDetail, responses={
    **CASE_ERRORS, **bad_request("the unit is not in the table, or the deadline is past or too far"),
    **refusal(409, "The case's state does not allow dispatch, or it is dispatched and not overdue yet")},
    summary="派遣 a filed case to a unit, or 超期改派 an overdue one (supervisor)")
def dispatch(case_id: CaseId, body: DispatchIn, caller: Dispatcher, review: Review) -> CaseDetail:
    deadline = None
    if body.deadline is not None:
        try:
            deadline = read_local(body.deadline, review.settings.display_timezone)
        except (OverflowError, ValueError):
            raise Invalid(f"处置期限 {body.deadline} 超出范围") from None
    return review.case_detail(review.steps.dispatch(case_id, caller.user, body.unit, deadline=deadline,
                                                    note=body.note))


@router.post("/cases/{case_id}/dispose", response_model=CaseDetail, responses={
    **STEP_ERRORS, **bad_request(f"no photo, or more than {MAX_PHOTOS}"),
    **refusal(413, f"A photo is over {MAX_PHOTO_BYTES} bytes, or the whole body over its limit"),
    **refusal(415, "A photo is no whole JPEG or PNG picture (judged by its bytes); nothing was stored")},
    summary="上报处置: the unit's disposal, with field photos as multipart (officer)")
def dispose(case_id: CaseId, caller: Disposer, review: Review,
            photos: Annotated[list[UploadFile], File(description=f"1 to {MAX_PHOTOS} JPEG or PNG field photos")],
            note: Annotated[str, Form(max_length=NOTE_MAX)] = "") -> CaseDetail:
    # One byte over the limit is enough to refuse a photo: the rest is never read.
    uploads = [(photo.filename or "", photo.file.read(MAX_PHOTO_BYTES + 1)) for photo in photos]
    return review.case_detail(review.steps.dispose(case_id, caller.user, uploads, note))


@router.post("/cases/{case_id}/verify", response_model=CaseDetail, responses={
    **STEP_ERRORS, **bad_request("sending back without a note")},
    summary="核查: accept the disposal, or send it back to the unit with a note (supervisor)")
def verify(case_id: CaseId, body: VerifyIn, caller: Verifier, review: Review) -> CaseDetail:
    return review.case_detail(review.steps.verify(case_id, caller.user, accept=body.accept, note=body.note))


@router.post("/cases/{case_id}/close", response_model=CaseDetail, responses=STEP_ERRORS,
             summary="结案 a verified case (supervisor)")
def close(case_id: CaseId, body: NoteIn, caller: Closer, review: Review) -> CaseDetail:
    return review.case_detail(review.steps.close(case_id, caller.user, body.note))


@router.get("/workflow/units", response_model=WorkflowConfig, responses=FORBIDDEN,
            summary="The units a case may be dispatched to, and the hours each violation kind has")
def units(caller: Reviewer, review: Review) -> WorkflowConfig:
    return review.workflow
