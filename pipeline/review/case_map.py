"""What the map page (地图) places: the open cases, each where its camera stands.

Open is every case still waiting on someone: 待审核, 已确认, 已上报 and the 处置流程 short of 结案
(已立案, 已派遣, 已处置, 已核查); rejected, duplicate and closed cases are done with. A case is
placed at its camera's location in the camera file, and at the location it was filed with when its
camera is no longer in the files. Overdue (超期) and 复核未通过 are read as the case list reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.review.audit import utc_iso
from pipeline.review.db import ReviewDatabase
from pipeline.review.vocabulary import Status
from pipeline.review.workflow import RECHECK_FAILED_CONDITION, now, overdue_condition

OPEN_STATUSES = (Status.NEW, Status.CONFIRMED, Status.ESCALATED, Status.FILED, Status.DISPATCHED, Status.DISPOSED,
                 Status.VERIFIED)
MAX_MAP_CASES = 500  # the newest; a map with more markers than this is no longer read marker by marker
HEALTH_LABELS = {"ok": "正常", "degraded": "异常", "down": "中断", "unknown": "未知"}

_COLUMNS = ("case_id, camera_id, json_extract(record, '$.camera_name'), violation, status,"
            " json_extract(record, '$.confirmed_wall'), json_extract(record, '$.location.lat'),"
            " json_extract(record, '$.location.lon'),"
            " (SELECT deadline FROM case_loop l WHERE l.case_id = cases.case_id),"
            f" {RECHECK_FAILED_CONDITION}")


@dataclass(frozen=True, slots=True)
class OpenCase:
    case_id: str
    camera_id: str
    camera_name: str
    violation: str
    status: Status
    confirmed_wall: str
    lat: float | None  # where it was filed; the map prefers its camera's location now
    lon: float | None
    deadline: str | None  # ISO 8601 UTC, once dispatched
    overdue: bool
    recheck_failed: bool


@dataclass(frozen=True, slots=True)
class OpenCasesFound:
    cases: list[OpenCase]  # newest first, at most the limit
    total: int  # every open case the filter selects


class OpenCases:
    """Reads the cases table for the map; writes nothing."""

    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def find(self, *, violation: str | None = None, overdue: bool = False,
             limit: int = MAX_MAP_CASES) -> OpenCasesFound:
        """The open cases of ``violation`` (None: every kind), only the overdue ones if ``overdue``."""
        clauses = [f"status IN ({', '.join('?' * len(OPEN_STATUSES))})"]
        values: list[Any] = [status.value for status in OPEN_STATUSES]
        if violation:
            clauses.append("violation = ?")
            values.append(violation)
        if overdue:
            condition, parameters = overdue_condition()
            clauses.append(condition)
            values.extend(parameters)
        where = " WHERE " + " AND ".join(clauses)
        moment = utc_iso(now())
        with self._db.reading() as conn:
            total = conn.execute("SELECT COUNT(*) FROM cases" + where, values).fetchone()[0]
            rows = conn.execute(f"SELECT {_COLUMNS} FROM cases{where} ORDER BY confirmed_at DESC, case_id DESC"
                                " LIMIT ?", [*values, limit]).fetchall()
        return OpenCasesFound([_open_case(row, moment) for row in rows], total)


def _open_case(row: tuple, moment: str) -> OpenCase:
    case_id, camera_id, camera_name, violation, status, confirmed_wall, lat, lon, deadline, failed = row
    status = Status(status)
    return OpenCase(case_id=case_id, camera_id=camera_id, camera_name=camera_name or camera_id, violation=violation,
                    status=status, confirmed_wall=confirmed_wall, lat=_number(lat), lon=_number(lon),
                    deadline=deadline, overdue=status is Status.DISPATCHED and deadline is not None
                    and deadline < moment, recheck_failed=bool(failed))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
