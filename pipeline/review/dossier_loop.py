"""处置经过: how a case was handled after its confirmation (the 处置流程, workflow.py), as the 案卷 prints
it (dossier.py) and the bundle's case.json holds it (bundle.py).

The steps are read from the case's audit trail: 立案, 派遣 and 超期改派, 上报处置 with its field photos,
摄像头复核 with its after-photo, 核查通过 or 核查退回, 结案. Each names who took it as its entry keeps
them (姓名 and 执法证号; for an entry from before entries named anyone, as the account names them
now); a camera recheck is the system's. A step's time is the loop's own where the loop keeps it (the
latest 派遣, the disposal in force, …: the service's clock, which deadlines are read against); an
earlier one of its kind (before a send-back) is its entry's time.

Overdue (超期) as it was, not only as it is now: a disposal reported after the deadline then in force,
the re-dispatch of an overdue case (超期改派), a dispatched case past its deadline now. The field
photos and after-photos are read whole and checked against the sha256 the loop recorded for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any

from pipeline.evidence import EvidenceStore
from pipeline.review.accounts import User
from pipeline.review.audit import AuditEntry
from pipeline.review.cases import ReviewCase
from pipeline.review.dossier import DossierPdf, Officer, check_label, recorded_officer
from pipeline.review.evidence_check import StoredEvidence, read_loop_files
from pipeline.review.local_time import show_local
from pipeline.review.recheck import ACTION as RECHECK
from pipeline.review.vocabulary import ACTION_LABELS
from pipeline.review.workflow import CaseLoop, Step

STEP_ACTIONS = frozenset({*(step.value for step in Step), RECHECK})
# The step's kind, for the loop's own time of the latest step of each (CaseLoop's columns).
_KINDS = {Step.FILE.value: "filed_at", Step.DISPATCH.value: "dispatched_at", Step.REDISPATCH.value: "dispatched_at",
          Step.SEND_BACK.value: "dispatched_at", Step.DISPOSE.value: "disposed_at",
          Step.VERIFY.value: "verified_at", Step.CLOSE.value: "closed_at"}
_SYSTEM = "系统（摄像头复核）"


@dataclass(frozen=True, slots=True)
class LoopStep:
    """One step of the loop as its audit entry recorded it."""

    seq: int
    at: str
    action: str
    by: Officer | None  # None: the system (a camera recheck)
    detail: dict[str, Any]
    deadline: str | None  # in force once the step was taken (a dispatch's own)
    late_s: float | None  # past the deadline then in force: a disposal reported late, an overdue case re-dispatched

    def to_dict(self) -> dict[str, Any]:
        by = self.by
        return {"seq": self.seq, "at": self.at, "action": self.action, "label": ACTION_LABELS[self.action],
                "actor": by.name if by else "system", "display_name": by.display_name if by else None,
                "badge_number": by.badge_number if by else None, "deadline": self.deadline, "late_s": self.late_s}


@dataclass(frozen=True, slots=True)
class LoopHistory:
    """A case's 处置流程 with its steps and its files (field photos, then after-photos)."""

    loop: CaseLoop
    steps: tuple[LoopStep, ...]
    files: tuple[StoredEvidence, ...]

    @classmethod
    def of(cls, case: ReviewCase, audit: Iterable[AuditEntry], accounts: Iterable[User],
           evidence: EvidenceStore) -> LoopHistory | None:
        """None before 立案."""
        loop = case.loop
        if loop is None:
            return None
        accounts = list(accounts)
        entries = [entry for entry in audit if entry.action in STEP_ACTIONS]
        times = _step_times(loop, entries)
        steps, deadline = [], None
        for entry, at in zip(entries, times, strict=True):
            late = None
            if entry.action == Step.REDISPATCH.value:
                late = _seconds(entry.detail.get("overdue_deadline") or deadline, at)
            elif entry.action == Step.DISPOSE.value and deadline:
                late = _seconds(deadline, at)
            deadline = entry.detail.get("deadline", deadline) if entry.action != RECHECK else deadline
            by = None if entry.action == RECHECK else recorded_officer(entry.actor, entry.detail, accounts)
            steps.append(LoopStep(entry.seq, at, entry.action, by, entry.detail, deadline,
                                  late if late is not None and late > 0 else None))
        return cls(loop, tuple(steps), tuple(read_loop_files(evidence, case)))

    @property
    def was_overdue(self) -> bool:
        return self.loop.overdue or any(step.late_s is not None for step in self.steps)

    @property
    def close_s(self) -> float | None:
        """From 立案 to 结案; None while the case is open."""
        return _seconds(self.loop.filed_at, self.loop.closed_at) if self.loop.closed_at else None

    def to_dict(self) -> dict[str, Any]:
        """The loop for the bundle's case.json: its columns, photos and rechecks, steps, overdue and time to close."""
        return {**asdict(self.loop), "recheck_failed": self.loop.recheck_failed, "was_overdue": self.was_overdue,
                "close_s": self.close_s, "steps": [step.to_dict() for step in self.steps]}

    def print_to(self, pdf: DossierPdf, zone: tzinfo) -> None:
        """The section's body: a summary, the steps, the pictures and their sha256s."""
        pdf.pairs(self._summary(zone))
        pdf.ln(2)
        pdf.grid(("时间", "步骤", "操作人", "内容"), (36, 20, 42, 82),
                 ((show_local(step.at, zone), ACTION_LABELS[step.action], step.by.describe() if step.by else _SYSTEM,
                   _what(step, self._unit_names(), zone)) for step in self.steps))
        if not self.files:
            return
        by_name = {file.name: file for file in self.files}
        photos = [(by_name[photo.name], f"第 {photo.disposal} 次处置") for photo in self.loop.photos]
        rechecks = [(by_name[recheck.name], _finding(recheck.still_present, recheck.flagged))
                    for recheck in self.loop.rechecks]
        for title, shown in (("处置现场照片", photos), ("摄像头复核画面", rechecks)):
            if shown:
                _subheading(pdf, title)
                pdf.photo_row(shown)
        _subheading(pdf, "处置照片及复核画面 sha256 校验")
        pdf.grid(("文件", "记录的 sha256", "校验"), (32, 128, 20),
                 ((file.name, file.recorded_sha256, check_label(file)) for file in self.files))

    def _summary(self, zone: tzinfo) -> list[tuple[str, str]]:
        loop = self.loop
        latest = loop.rechecks[-1] if loop.rechecks else None
        recheck = "未复核"
        if latest is not None:
            recheck = (f"{latest.name}（{show_local(latest.checked_at, zone)}）：{latest.result_label}"
                       + ("，复核未通过" if latest.flagged else ""))
        closed = "尚未结案"
        if loop.closed_at and self.close_s is not None:
            closed = f"{show_local(loop.closed_at, zone)}，立案至结案用时 {_duration(self.close_s)}"
        return [("立案号", loop.case_number), ("立案时间", show_local(loop.filed_at, zone)),
                ("责任单位", f"{loop.unit_name}（{loop.unit}）" if loop.unit else "尚未派遣"),
                ("处置期限", show_local(loop.deadline, zone) or "—"),
                ("超期", self._overdue(zone)), ("摄像头复核", recheck), ("结案", closed)]

    def _overdue(self, zone: tzinfo) -> str:
        notes = []
        names = self._unit_names()
        for step in self.steps:
            if step.late_s is None:
                continue
            if step.action == Step.REDISPATCH.value:
                old = step.detail.get("overdue_unit")
                notes.append(f"{names.get(old, old)}超期 {_duration(step.late_s)}（期限 "
                             f"{show_local(step.detail.get('overdue_deadline'), zone)}），"
                             f"{show_local(step.at, zone)} 超期改派")
            else:
                notes.append(f"第 {step.detail.get('disposal')} 次处置于期限（{show_local(step.deadline, zone)}）"
                             f"后 {_duration(step.late_s)} 上报")
        if self.loop.overdue:
            notes.append(f"至今超期（处置期限 {show_local(self.loop.deadline, zone)}）")
        return "是：" + "；".join(notes) if notes else "否"

    def _unit_names(self) -> dict[str, str]:
        return {step.detail["unit"]: step.detail.get("unit_name") or step.detail["unit"]
                for step in self.steps if step.detail.get("unit")}


def _what(step: LoopStep, units: dict[str, str], zone: tzinfo) -> str:
    """What the step did, in a line."""
    detail = step.detail
    action = step.action
    if action == Step.FILE.value:
        text = f"立案号 {detail.get('case_number')}"
    elif action == Step.DISPATCH.value:
        text = f"派遣至 {detail.get('unit_name') or detail.get('unit')}，处置期限 {show_local(step.deadline, zone)}"
    elif action == Step.REDISPATCH.value:
        old = detail.get("overdue_unit")
        text = (f"原责任单位 {units.get(old, old)} 超期（期限 {show_local(detail.get('overdue_deadline'), zone)}），"
                f"改派至 {detail.get('unit_name') or detail.get('unit')}，新处置期限 {show_local(step.deadline, zone)}")
    elif action == Step.DISPOSE.value:
        names = "、".join(photo["name"] for photo in detail.get("photos", []))
        text = f"第 {detail.get('disposal')} 次上报处置，现场照片 {len(detail.get('photos', []))} 张：{names}"
        if step.late_s is not None:
            text += f"（超过处置期限 {_duration(step.late_s)}）"
    elif action == RECHECK:
        text = (f"{detail.get('name')}：{'仍在' if detail.get('still_present') else '已清除'}"
                f"（置信度 {detail.get('confidence', 0):.2f}）" + ("，复核未通过" if detail.get("flagged") else ""))
    elif action == Step.VERIFY.value:
        text = "处置到位，核查通过"
        against = detail.get("against_camera_recheck")
        if against:
            text += (f"（摄像头复核 {against.get('name')} 显示仍在，置信度 {against.get('confidence', 0):.2f}，"
                     "经人工核查予以通过）")
    elif action == Step.SEND_BACK.value:
        text = f"退回责任单位重新处置，新处置期限 {show_local(step.deadline, zone)}"
    else:
        text = "结案"
    note = (detail.get("note") or "").strip()
    return f"{text}；说明：{note}" if note else text


def _finding(still_present: bool, flagged: bool) -> str:
    return ("仍在" if still_present else "已清除") + ("·复核未通过" if flagged else "")


def _subheading(pdf: DossierPdf, text: str) -> None:
    if pdf.will_page_break(60):  # a title never ends a page away from its pictures
        pdf.add_page()
    pdf.ln(2)
    pdf.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")


def _step_times(loop: CaseLoop, entries: list[AuditEntry]) -> list[str]:
    """Each step's time: the loop's column for the latest step of its kind, where it holds one; else the entry's."""
    rechecks = {recheck.name: recheck.checked_at for recheck in loop.rechecks}
    seen: set[str] = set()
    times = []
    for entry in reversed(entries):
        column = _KINDS.get(entry.action)
        at = None
        if entry.action == RECHECK:
            at = rechecks.get(entry.detail.get("name", ""))
        elif column is not None and column not in seen:
            seen.add(column)
            at = getattr(loop, column)
        times.append(at or entry.at)
    return times[::-1]


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _duration(seconds: float) -> str:
    """``1 天 2 小时 5 分钟``; under a minute, in seconds."""
    if seconds < 60:
        return f"{seconds:.0f} 秒"
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{days} 天" if days else "", f"{hours} 小时" if hours else "", f"{minutes} 分钟" if minutes else ""]
    return " ".join(part for part in parts if part)
