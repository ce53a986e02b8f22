"""The API's bodies for triage over several cases: a bulk decision from the list, and the cases a case
may repeat (duplicates.py)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from pipeline.review.duplicates import DuplicateCandidate
from pipeline.review.local_time import show_local
from pipeline.review.schemas import NOTE_MAX, CaseSummary
from pipeline.review.vocabulary import STATUS_LABELS, Decision, RejectReason, Status

MAX_BULK = 100
CaseIdIn = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class BulkDecisionIn(BaseModel):
    action: Literal[Decision.CONFIRM, Decision.REJECT] = Field(description="confirm (确认) or reject (驳回)")
    case_ids: list[CaseIdIn] = Field(min_length=1, max_length=MAX_BULK, description="New cases, each decided on "
                                     "its own: one refused leaves the others decided")
    reason: RejectReason | None = Field(None, description="The reject reason, for each case (reject only)")
    note: str = Field("", max_length=NOTE_MAX, description="For each case; required when the reason is 'other'.")
    versions: dict[str, int] = Field(default_factory=dict, description="case id → the version the list showed "
                                     "(CaseSummary.version); a case that changed since is refused (case_changed)")


class BulkResultOut(BaseModel):
    case_id: str
    done: bool = Field(description="true: decided now")
    status: Status | None = Field(description="its status after this request; null for no such case")
    status_label: str | None
    code: str | None = Field(None, description="why it was refused, as ErrorOut.code: case_claimed, conflict, …")
    detail: str | None = Field(None, description="why it was refused, in Chinese")


class BulkDecisionOut(BaseModel):
    action: Decision
    done: int = Field(description="how many cases were decided now")
    refused: int
    summary: str = Field(description="in Chinese, for the page, e.g. 已确认 5 件，2 件未处理：…")
    results: list[BulkResultOut] = Field(description="one per case id sent, in their order")

    @classmethod
    def of(cls, action: Decision, results: list[BulkResultOut]) -> BulkDecisionOut:
        refused = [result for result in results if not result.done]
        summary = f"{STATUS_LABELS[action.status]} {len(results) - len(refused)} 件"
        if refused:
            summary += f"，{len(refused)} 件未处理：" + "；".join(
                f"{result.case_id}：{result.detail}" for result in refused)
        return cls(action=action, done=len(results) - len(refused), refused=len(refused), summary=summary,
                   results=results)


class DuplicateCandidateOut(BaseModel):
    case: CaseSummary = Field(description="with its thumbnail, time and plate")
    same_place: bool = Field(description="same camera and zone")
    same_plate: bool
    reasons: list[str] = Field(description="why it is suggested, in Chinese, e.g. 同一摄像头与管控区, 同一车牌")
    minutes_apart: float = Field(description="confirmed this many minutes after the case (negative: before)")
    apart_label: str = Field(description="e.g. 早 25 分钟, 晚 1 小时 5 分钟")
    confirmed_label: str = Field(description="its confirmation time on the district's clock")

    @classmethod
    def of(cls, candidate: DuplicateCandidate, zone: tzinfo) -> DuplicateCandidateOut:
        minutes = candidate.seconds_apart / 60
        return cls(case=CaseSummary.of(candidate.case), same_place=candidate.same_place,
                   same_plate=candidate.same_plate, reasons=candidate.reasons, minutes_apart=round(minutes, 1),
                   apart_label=_apart(minutes), confirmed_label=show_local(candidate.case.record.confirmed_wall, zone))


class DuplicateSuggestionsOut(BaseModel):
    case_id: str
    window_h: float = Field(description="cases confirmed this many hours either side were looked at")
    candidates: list[DuplicateCandidateOut] = Field(description="most likely first")


def _apart(minutes: float) -> str:
    whole = round(abs(minutes))
    if whole == 0:
        return "同时"
    hours, rest = divmod(whole, 60)
    span = (f"{hours} 小时" if hours else "") + (f" {rest} 分钟" if rest and hours else f"{rest} 分钟" if rest else "")
    return f"{'早' if minutes < 0 else '晚'} {span}"
