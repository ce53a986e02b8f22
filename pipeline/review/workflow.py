"""处置流程: the closed loop a confirmed case goes through at a 数字城管 centre, as one state machine.

    已确认 ─立案─► 已立案 ─派遣─► 已派遣 ─上报处置─► 已处置 ─核查通过─► 已核查 ─结案─► 已结案
                                 ▲  │ 超期改派              │ 核查退回
                                 └──┴───────────────────────┘

Who takes which step, and why:

- 立案 (file): an officer or a supervisor. It puts a confirmed violation on record under a case
  number and takes no judgement beyond the confirmation already made.
- 派遣, 超期改派, 核查, 结案 (dispatch, re-dispatch an overdue case, verify or send back, close): a
  supervisor. They commit another unit's time, judge its work and end the case: the 中队长's call.
- 上报处置 (dispose): an officer, reporting the unit's disposal with field photos. Never a
  supervisor, so the one who verifies a disposal is never the one who reported it.

Overdue (超期) is no stored state: a dispatched case whose deadline has passed, computed from the
deadline and ``clock()`` whenever the case is read, so no background job has to flip it.

A camera recheck (摄像头复核, recheck.py) is no step either: `patrol recheck` files on a dispatched
or disposed case what the patrol's camera sees at its spot now, and the state stays as it was.

The table of units and deadlines is a YAML file (workflow.yaml beside this module, or the one
``ReviewSettings.workflow_config`` names).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.config.strict_model import StrictModel
from pipeline.review.audit import utc_iso
from pipeline.review.errors import Conflict, Invalid, NotAllowed, ReviewError
from pipeline.review.local_time import DEFAULT_DISPLAY_TIMEZONE, show_local
from pipeline.review.vocabulary import ROLE_LABELS, STATUS_LABELS, AccountRole, Status
from pipeline.types import EvidenceItem

DEFAULT_WORKFLOW_PATH = Path(__file__).with_name("workflow.yaml")
# What deadlines and overdue are read against: time.time, but a test can freeze it (monkeypatch workflow.clock).
clock = time.time
MAX_DEADLINE = timedelta(days=30)  # from 派遣: a later deadline is a typo, not a plan


def now() -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


class Step(StrEnum):
    """A step of the loop; its value is the step's audit action."""

    FILE = "file"
    DISPATCH = "dispatch"
    REDISPATCH = "redispatch"
    DISPOSE = "dispose"
    VERIFY = "verify"
    SEND_BACK = "send_back"
    CLOSE = "close"


OFFICERS = frozenset({AccountRole.OFFICER})
SUPERVISORS = frozenset({AccountRole.SUPERVISOR})


@dataclass(frozen=True, slots=True)
class Transition:
    step: Step
    source: Status
    target: Status
    roles: frozenset[AccountRole]
    label: str  # the step as officers name it
    only_overdue: bool = False


TRANSITIONS = {transition.step: transition for transition in (
    Transition(Step.FILE, Status.CONFIRMED, Status.FILED, OFFICERS | SUPERVISORS, "立案"),
    Transition(Step.DISPATCH, Status.FILED, Status.DISPATCHED, SUPERVISORS, "派遣"),
    Transition(Step.REDISPATCH, Status.DISPATCHED, Status.DISPATCHED, SUPERVISORS, "超期改派", only_overdue=True),
    Transition(Step.DISPOSE, Status.DISPATCHED, Status.DISPOSED, OFFICERS, "上报处置"),
    Transition(Step.VERIFY, Status.DISPOSED, Status.VERIFIED, SUPERVISORS, "核查"),
    Transition(Step.SEND_BACK, Status.DISPOSED, Status.DISPATCHED, SUPERVISORS, "核查退回"),
    Transition(Step.CLOSE, Status.VERIFIED, Status.CLOSED, SUPERVISORS, "结案"),
)}
# What to do with a case in each state: the second half of every refusal of a step.
WHAT_NEXT = {
    Status.NEW: "请先审核确认",
    Status.CONFIRMED: "请先立案",
    Status.FILED: "请中队长先派遣",
    Status.DISPATCHED: "请等待责任单位处置，由执法队员上报处置结果",
    Status.DISPOSED: "请中队长核查处置结果",
    Status.VERIFIED: "请中队长结案",
    Status.CLOSED: "处置流程已结束",
    Status.REJECTED: "已驳回的案件不进入处置流程",
    Status.ESCALATED: "请中队长先处理上报的案件",
    Status.DUPLICATE: "重复案件不进入处置流程，请处理原案件",
}


class WrongState(Conflict):
    """A step the case's state does not allow; says the state and what to do next."""

    code = "workflow_state"

    def __init__(self, transition: Transition, status: Status) -> None:
        super().__init__(f"案件当前为「{STATUS_LABELS[status]}」，不能{transition.label}：{WHAT_NEXT[status]}")


class NotOverdue(Conflict):
    """A re-dispatch of a case whose deadline has not passed."""

    code = "not_overdue"

    def __init__(self, deadline: str) -> None:
        self.deadline = deadline
        super().__init__(self.describe(ZoneInfo(DEFAULT_DISPLAY_TIMEZONE)))

    def describe(self, zone: tzinfo) -> str:
        return (f"案件处置期限（{show_local(self.deadline, zone)}）未到，不能超期改派：请等待责任单位处置，"
                "超期后再改派")


@dataclass(frozen=True, slots=True)
class CasePhoto:
    """A picture filed on a case after the fact, stored in the evidence store under the case by its sha256."""

    name: str
    key: str
    sha256: str
    content_type: str
    size: int

    def as_evidence(self) -> EvidenceItem:
        return EvidenceItem(key=self.key, sha256=self.sha256, content_type=self.content_type)


@dataclass(frozen=True, slots=True)
class DisposalPhoto(CasePhoto):
    """A field photo of a reported disposal; named disposal-<n>-<i>.jpg: the n-th report, its i-th photo."""

    disposal: int


@dataclass(frozen=True, slots=True)
class CameraRecheck(CasePhoto):
    """摄像头复核 (recheck.py): what the patrol's camera showed at the case's spot, named recheck-<n>.jpg
    after its after-photo."""

    number: int  # n: 1 for the first recheck of the case
    checked_at: str  # when it was filed, on the service's clock, as every time of the loop
    frame_wall: str  # when the camera took the picture, on the camera's clock
    still_present: bool
    confidence: float  # in the finding as it reads, present or cleared
    flagged: bool  # 复核未通过: still present at or after the deadline then in force
    model: str  # the detector's name

    @property
    def result_label(self) -> str:
        return f"{'仍在' if self.still_present else '已清除'}（置信度 {self.confidence:.2f}）"


@dataclass(frozen=True, slots=True)
class CaseLoop:
    """A case's 处置流程 from 立案 on; times are ISO 8601 UTC. ``overdue`` is as of its reading."""

    case_number: str
    filed_at: str
    unit: str | None
    unit_name: str | None
    dispatched_at: str | None
    deadline: str | None
    disposed_at: str | None
    verified_at: str | None
    closed_at: str | None
    photos: tuple[DisposalPhoto, ...]
    rechecks: tuple[CameraRecheck, ...]  # oldest first
    overdue: bool

    def audit_state(self) -> dict[str, Any]:
        """What the loop adds to the case's review state, which ``patrol verify`` holds to the trail."""
        state = {"case_number": self.case_number, "unit": self.unit, "deadline": self.deadline,
                 "photos": {photo.name: photo.sha256 for photo in self.photos}}
        if self.rechecks:  # only then: the entries of a case never rechecked keep the shape they were sealed in
            state["rechecks"] = {recheck.name: {"sha256": recheck.sha256, "still_present": recheck.still_present,
                                                "flagged": recheck.flagged} for recheck in self.rechecks}
        return state

    def photo(self, name: str) -> DisposalPhoto | None:
        return next((photo for photo in self.photos if photo.name == name), None)

    @property
    def latest_photos(self) -> tuple[DisposalPhoto, ...]:
        """The photos of the latest report of disposal (one sent back keeps its photos, under its number)."""
        latest = max((photo.disposal for photo in self.photos), default=0)
        return tuple(photo for photo in self.photos if photo.disposal == latest)

    def recheck_since(self, moment: str | None) -> CameraRecheck | None:
        """The latest recheck if it was filed at or after ``moment``; None otherwise, or without a moment."""
        latest = self.rechecks[-1] if self.rechecks else None
        return latest if latest and moment and latest.checked_at >= moment else None

    @property
    def recheck_of_disposal(self) -> CameraRecheck | None:
        """The latest recheck since the latest report of disposal; None before one, or while none is reported."""
        return self.recheck_since(self.disposed_at)

    @property
    def recheck_failed(self) -> bool:
        """复核未通过: the latest recheck found the violation still there at or after its deadline."""
        return bool(self.rechecks and self.rechecks[-1].flagged)


# The loop's columns as one JSON value in a query on ``cases`` (NULL before 立案), photos included.
LOOP_COLUMN = (
    "(SELECT json_object('case_number', l.case_number, 'filed_at', l.filed_at, 'unit', l.unit,"
    " 'unit_name', l.unit_name, 'dispatched_at', l.dispatched_at, 'deadline', l.deadline,"
    " 'disposed_at', l.disposed_at, 'verified_at', l.verified_at, 'closed_at', l.closed_at,"
    " 'photos', (SELECT json_group_array(json_object('name', p.name, 'disposal', p.disposal, 'key', p.key,"
    " 'sha256', p.sha256, 'content_type', p.content_type, 'size', p.size))"
    " FROM disposal_photos p WHERE p.case_id = l.case_id),"
    " 'rechecks', (SELECT json_group_array(json_object('name', r.name, 'number', r.number, 'key', r.key,"
    " 'sha256', r.sha256, 'content_type', r.content_type, 'size', r.size, 'checked_at', r.checked_at,"
    " 'frame_wall', r.frame_wall, 'still_present', r.still_present, 'confidence', r.confidence,"
    " 'flagged', r.flagged, 'model', r.model)) FROM camera_rechecks r WHERE r.case_id = l.case_id))"
    " FROM case_loop l WHERE l.case_id = cases.case_id)")
# The cases whose latest recheck is flagged (复核未通过), as CaseLoop.recheck_failed reads it.
RECHECK_FAILED_CONDITION = (
    "case_id IN (SELECT r.case_id FROM camera_rechecks r WHERE r.flagged"
    " AND r.number = (SELECT MAX(number) FROM camera_rechecks WHERE case_id = r.case_id))")


def loop_from_json(text: str | None, status: Status) -> CaseLoop | None:
    """The loop LOOP_COLUMN holds, overdue or not as of ``clock()``; None before 立案."""
    if text is None:
        return None
    fields = json.loads(text)
    photos = sorted((DisposalPhoto(**photo) for photo in fields.pop("photos")), key=lambda p: (p.disposal, p.name))
    rechecks = sorted((CameraRecheck(**{**recheck, "still_present": bool(recheck["still_present"]),
                                        "flagged": bool(recheck["flagged"])}) for recheck in fields.pop("rechecks")),
                      key=lambda recheck: recheck.number)
    deadline = fields["deadline"]
    overdue = status is Status.DISPATCHED and deadline is not None and deadline < utc_iso(now())
    return CaseLoop(**fields, photos=tuple(photos), rechecks=tuple(rechecks), overdue=overdue)


def overdue_condition() -> tuple[str, list[Any]]:
    """A WHERE condition on ``cases`` for the overdue cases as of ``clock()``; the same rule as loop_from_json."""
    return ("status = ? AND case_id IN (SELECT case_id FROM case_loop WHERE deadline < ?)",
            [Status.DISPATCHED.value, utc_iso(now())])


def check_step(step: Step, status: Status, role: AccountRole, loop: CaseLoop | None) -> Transition:
    """The transition ``step`` takes from ``status`` for ``role``; NotAllowed for a role the step is
    not for, WrongState for a state it does not start from, NotOverdue for a re-dispatch in time."""
    refused = _refusal(step, status, role, loop)
    if refused is not None:
        raise refused
    return TRANSITIONS[step]


def open_steps(status: Status, role: AccountRole, loop: CaseLoop | None) -> list[Step]:
    """The steps ``role`` may take on a case now, in the table's order: the page offers their forms."""
    return [step for step in TRANSITIONS if _refusal(step, status, role, loop) is None]


def _refusal(step: Step, status: Status, role: AccountRole, loop: CaseLoop | None) -> ReviewError | None:
    transition = TRANSITIONS[step]
    if role not in transition.roles:
        allowed = "或".join(ROLE_LABELS[allowed] for allowed in sorted(transition.roles))
        return NotAllowed(f"{transition.label}须由{allowed}进行，您是{ROLE_LABELS[role]}")
    if status is not transition.source:
        return WrongState(transition, status)
    if transition.only_overdue and not (loop and loop.overdue):
        return NotOverdue(loop.deadline if loop and loop.deadline else utc_iso(now()))
    return None


# -- the table of units and deadlines ------------------------------------------------------------

Hours = Annotated[float, Field(gt=0, le=MAX_DEADLINE / timedelta(hours=1))]


class Unit(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="what the API and the audit trail name")
    name: str = Field(min_length=1, max_length=64, description="what officers read, e.g. 双山街道执法中队")


class WorkflowConfig(StrictModel):
    case_number_prefix: str = Field(
        pattern=r"^[^\s%_/-]{1,16}$", description="first part of a case number, e.g. 双山 in 双山-20261207-0001")
    units: tuple[Unit, ...] = Field(min_length=1, description="the units a case may be dispatched to")
    deadline_hours: dict[str, Hours] = Field(description="violation kind → hours a unit has to dispose of it")
    default_deadline_hours: Hours = Field(description="for a violation kind the table does not list")

    @model_validator(mode="after")
    def _unit_ids_are_unique(self) -> WorkflowConfig:
        ids = [unit.id for unit in self.units]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unit ids must be unique: {ids}")
        return self

    def unit(self, unit_id: str) -> Unit:
        """Invalid for an id the table does not list."""
        found = next((unit for unit in self.units if unit.id == unit_id), None)
        if found is None:
            raise Invalid(f"没有责任单位 {unit_id}；可选：{'、'.join(f'{u.id}（{u.name}）' for u in self.units)}")
        return found

    def deadline(self, violation: str, dispatched: datetime) -> datetime:
        return dispatched + timedelta(hours=self.deadline_hours.get(violation, self.default_deadline_hours))


class WorkflowConfigError(ValueError):
    """The workflow table cannot be used; the message names the file and what is wrong."""


def load_workflow_config(path: Path | None = None) -> WorkflowConfig:
    """The table at ``path``, or the packaged default (workflow.yaml) when None."""
    source = path or DEFAULT_WORKFLOW_PATH
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        return WorkflowConfig.model_validate(data)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WorkflowConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise WorkflowConfigError(f"{source}: {problems}") from None


def case_number(prefix: str, day: datetime, sequence: int) -> str:
    """双山-20261207-0001: ``day`` on the district's clock, ``sequence`` counting that day's 立案 from 1."""
    return f"{prefix}-{day:%Y%m%d}-{sequence:04d}"
