"""Statistics for 考评: how many cases a period brought, how they were decided and handled, and how fast.

A case counts in a period by its confirmed time, the case list's time filter, so a period's
figures are those of the list under the same ``since``/``until``. Each grouping (day, violation,
camera, grid cell, officer) has a row per value with the same figures as the period's total:

* 确认率 (confirmation rate): confirmed violations / decided cases. A confirmed violation is one
  confirmed, or past that in the 处置流程 (立案 … 结案, workflow.py); decided is every status but 待审核;
* 误检率 (false-detection rate): rejected as 误检 (``detector_error``) / decided cases;
* 派遣, 结案 and 超期: cases dispatched (at least once), closed, and dispatched but past their
  deadline now (overdue as workflow.py reads it);
* 复核未通过: cases whose latest camera recheck found the violation still there at or after its
  deadline (recheck.py), as the case list's filter reads it;
* median times from filing to decision (审核), to dispatch and to close: each from the case reaching
  the review service (``received_at``), on the service's own clock like the steps' times, so a
  camera worker's clock never enters them.

The same figures export as CSV (UTF-8 with a byte-order mark, which Excel needs to read Chinese)
and as an XLSX workbook with a sheet per grouping.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from openpyxl import Workbook

from pipeline.review.cases import CaseFilter
from pipeline.review.db import ReviewDatabase
from pipeline.review.vocabulary import CONFIRMED_VIOLATIONS, RejectReason, Status, violation_label
from pipeline.review.workflow import LOOP_COLUMN, CaseLoop, loop_from_json

NO_GRID_CODE = "（无网格编码）"


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One value of a grouping (a day, a violation, ...) or the period's total, with its figures."""

    key: str
    label: str
    filed: int
    pending: int
    confirmed: int  # confirmed violations, those in the 处置流程 included
    rejected: int
    false_detections: int  # of the rejected, those rejected as 误检
    escalated: int
    duplicate: int
    dispatched: int
    closed: int
    overdue: int
    recheck_failed: int  # 复核未通过: the latest camera recheck found it still there past the deadline
    confirmation_rate: float | None  # None: nothing decided yet
    false_detection_rate: float | None
    median_decision_s: float | None  # None: no such step taken yet
    median_dispatch_s: float | None
    median_close_s: float | None


@dataclass(frozen=True, slots=True)
class CaseStats:
    since: str | None  # ISO 8601 with offset, inclusive; None: from the first case
    until: str | None  # exclusive
    officer: str | None  # only this officer's decisions; None: every case
    total: StatsRow
    by_day: list[StatsRow]  # local days of the service's display time zone, oldest first
    by_violation: list[StatsRow]  # the others most cases first
    by_camera: list[StatsRow]
    by_grid: list[StatsRow]
    by_officer: list[StatsRow]  # decided cases only, by who decided them

    def groupings(self) -> list[tuple[str, list[StatsRow]]]:
        """(Chinese title, rows) of the total and each grouping, in the order the page and exports show them."""
        return [("合计", [self.total]), ("按日", self.by_day), ("按违规类型", self.by_violation),
                ("按摄像头", self.by_camera), ("按网格", self.by_grid), ("按执法队员", self.by_officer)]


@dataclass(frozen=True, slots=True)
class _CaseFacts:
    """What the statistics read of one stored case; times are seconds from its filing (received_at)."""

    violation: str
    camera_id: str
    camera_name: str
    grid_code: str | None
    confirmed_at: float
    status: Status
    decided_by: str | None
    reject_reason: str | None
    decision_s: float | None
    loop: CaseLoop | None  # None before 立案
    dispatch_s: float | None
    close_s: float | None


_FACTS_QUERY = ("SELECT violation, camera_id, json_extract(record, '$.camera_name'),"
                " json_extract(record, '$.location.grid_code'), confirmed_at, status, decided_by, reject_reason,"
                f" received_at, decided_at, {LOOP_COLUMN} FROM cases")


@dataclass(slots=True)
class _Tally:
    label: str
    statuses: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    false_detections: int = 0
    dispatched: int = 0
    closed: int = 0
    overdue: int = 0
    recheck_failed: int = 0
    decision_s: list[float] = field(default_factory=list)
    dispatch_s: list[float] = field(default_factory=list)
    close_s: list[float] = field(default_factory=list)

    def add(self, case: _CaseFacts) -> None:
        self.statuses[case.status] += 1
        self.false_detections += case.reject_reason == RejectReason.DETECTOR_ERROR
        if case.loop is not None:
            self.dispatched += case.loop.dispatched_at is not None
            self.closed += case.loop.closed_at is not None
            self.overdue += case.loop.overdue
            self.recheck_failed += case.loop.recheck_failed
        for seconds, found in ((case.decision_s, self.decision_s), (case.dispatch_s, self.dispatch_s),
                               (case.close_s, self.close_s)):
            if seconds is not None:
                found.append(seconds)

    def row(self, key: str) -> StatsRow:
        filed = sum(self.statuses.values())
        decided = filed - self.statuses[Status.NEW]
        confirmed = sum(self.statuses[status] for status in CONFIRMED_VIOLATIONS)
        return StatsRow(
            key=key, label=self.label, filed=filed, pending=self.statuses[Status.NEW], confirmed=confirmed,
            rejected=self.statuses[Status.REJECTED], false_detections=self.false_detections,
            escalated=self.statuses[Status.ESCALATED], duplicate=self.statuses[Status.DUPLICATE],
            dispatched=self.dispatched, closed=self.closed, overdue=self.overdue, recheck_failed=self.recheck_failed,
            confirmation_rate=confirmed / decided if decided else None,
            false_detection_rate=self.false_detections / decided if decided else None,
            median_decision_s=_median(self.decision_s), median_dispatch_s=_median(self.dispatch_s),
            median_close_s=_median(self.close_s))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class _Grouping:
    """Rows by one key of a case; a case whose key is None (an undecided case by officer) is left out."""

    def __init__(self, key: Callable[[_CaseFacts], tuple[str, str] | None]) -> None:
        self._key = key
        self._tallies: dict[str, _Tally] = {}

    def add(self, case: _CaseFacts) -> None:
        found = self._key(case)
        if found is not None:
            key, label = found
            self._tallies.setdefault(key, _Tally(label)).add(case)

    def rows(self, *, by_key: bool = False) -> list[StatsRow]:
        rows = [tally.row(key) for key, tally in self._tallies.items()]
        return sorted(rows, key=(lambda row: row.key) if by_key else (lambda row: (-row.filed, row.key)))


class CaseStatistics:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def collect(self, period: CaseFilter, zone: tzinfo, *, officer: str | None = None,
                officer_labels: dict[str, str] | None = None) -> CaseStats:
        """The figures of the cases ``period`` selects; given ``officer``, of those they decided only.

        ``zone`` makes the days; ``officer_labels`` names officers by login name (else the login name).
        """
        where, values = period.where()
        if officer is not None:
            where += (" AND " if where else " WHERE ") + "decided_by = ?"
            values.append(officer)
        with self._db.reading() as conn:
            cases = [_facts(row) for row in conn.execute(_FACTS_QUERY + where, values)]
        labels = officer_labels or {}
        total = _Tally("合计")
        days = _Grouping(lambda case: (_local_day(case.confirmed_at, zone),) * 2)
        violations = _Grouping(lambda case: (case.violation, violation_label(case.violation)))
        cameras = _Grouping(lambda case: (case.camera_id, case.camera_name))
        grid_cells = _Grouping(lambda case: (case.grid_code or "", case.grid_code or NO_GRID_CODE))
        officers = _Grouping(lambda case: case.decided_by and (case.decided_by,
                                                                labels.get(case.decided_by, case.decided_by)))
        for case in cases:
            for grouping in (total, days, violations, cameras, grid_cells, officers):
                grouping.add(case)
        return CaseStats(
            since=period.since.isoformat() if period.since else None,
            until=period.until.isoformat() if period.until else None,
            officer=officer, total=total.row("total"), by_day=days.rows(by_key=True), by_violation=violations.rows(),
            by_camera=cameras.rows(), by_grid=grid_cells.rows(), by_officer=officers.rows())


def _facts(row: tuple) -> _CaseFacts:
    (violation, camera_id, camera_name, grid_code, confirmed_at, status, decided_by, reason, received, decided,
     loop_json) = row
    status = Status(status)
    loop = loop_from_json(loop_json, status)
    filed = datetime.fromisoformat(received)

    def since_filing(moment: str | None) -> float | None:
        return None if moment is None else (datetime.fromisoformat(moment) - filed).total_seconds()

    return _CaseFacts(violation=violation, camera_id=camera_id, camera_name=camera_name or camera_id,
                      grid_code=grid_code, confirmed_at=confirmed_at, status=status, decided_by=decided_by,
                      reject_reason=reason, decision_s=since_filing(decided), loop=loop,
                      dispatch_s=since_filing(loop.dispatched_at) if loop else None,
                      close_s=since_filing(loop.closed_at) if loop else None)


def _local_day(epoch_s: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(epoch_s, zone).date().isoformat()


# -- exports --------------------------------------------------------------------------------------

COLUMNS = ("分组", "键", "名称", "案件数", "待审核", "已确认", "已驳回", "其中误检", "已上报", "重复",
           "已派遣", "已结案", "超期", "复核未通过", "确认率", "误检率", "审核用时中位数（秒）", "派遣用时中位数（秒）",
           "结案用时中位数（秒）")


def _cells(title: str, row: StatsRow) -> list[str | int | float | None]:
    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return [title, row.key, row.label, row.filed, row.pending, row.confirmed, row.rejected, row.false_detections,
            row.escalated, row.duplicate, row.dispatched, row.closed, row.overdue, row.recheck_failed,
            rounded(row.confirmation_rate, 4), rounded(row.false_detection_rate, 4),
            *(rounded(seconds, 1) for seconds in (row.median_decision_s, row.median_dispatch_s, row.median_close_s))]


def _table(stats: CaseStats) -> Iterable[list[str | int | float | None]]:
    for title, rows in stats.groupings():
        for row in rows:
            yield _cells(title, row)


def to_csv(stats: CaseStats) -> bytes:
    """One table: a line per row of every grouping, the grouping named in the first column."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows([("" if cell is None else cell) for cell in cells] for cells in _table(stats))
    return text.getvalue().encode("utf-8-sig")


def to_xlsx(stats: CaseStats, *, period_label: str) -> bytes:
    """A workbook: 说明 (period and scope), then a sheet per grouping with the CSV's columns."""
    workbook = Workbook(write_only=True)
    about = workbook.create_sheet("说明")
    about.append(["统计期间", period_label])
    about.append(["统计范围", f"执法队员 {stats.officer} 处理的案件" if stats.officer else "全部案件"])
    about.append(["说明", "确认率、误检率以已处理（非待审核）案件为分母；审核、派遣、结案用时均自案件进入审核系统起算"])
    for title, rows in stats.groupings():
        sheet = workbook.create_sheet(title)
        sheet.append(COLUMNS)
        for row in rows:
            sheet.append(_cells(title, row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
