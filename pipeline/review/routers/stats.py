"""Statistics for 考评 (stats.py) as JSON, CSV and XLSX; the page that charts them is /stats (pages.py).

Officers see the figures of the cases they decided themselves, so each can follow their own work
without reading their colleagues'; supervisors, who evaluate the squad, see every case and every
officer. Admins see none, as they see no case: they manage accounts and cameras, and the squad's
performance is not theirs to judge.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from pipeline.review.auth import Caller
from pipeline.review.cases import CaseFilter
from pipeline.review.local_time import show_local
from pipeline.review.routers.cases import IsoTime, local_or_422
from pipeline.review.routers.dependencies import FORBIDDEN, Review, Reviewer
from pipeline.review.services import ReviewServices
from pipeline.review.stats import CaseStats, to_csv, to_xlsx
from pipeline.review.vocabulary import AccountRole

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

router = APIRouter(tags=["stats"])


def stats_period(
    review: Review,
    since: Annotated[IsoTime | None, Query(
        description="cases confirmed at or after (ISO 8601; no offset: the service's display time zone)")] = None,
    until: Annotated[IsoTime | None, Query(description="cases confirmed before (ISO 8601)")] = None,
) -> CaseFilter:
    """The period, read as the case list reads its time filter."""
    zone = review.settings.display_timezone
    return CaseFilter(since=local_or_422("since", since, zone), until=local_or_422("until", until, zone))


Period = Annotated[CaseFilter, Depends(stats_period)]


def stats_for(caller: Caller, review: ReviewServices, period: CaseFilter) -> CaseStats:
    """The period's figures as ``caller`` may see them: an officer's own decisions, or everything."""
    officer = caller.user.name if caller.user.role is AccountRole.OFFICER else None
    labels = {user.name: user.label for user in review.store.accounts.users()}
    return review.store.stats.collect(period, review.settings.display_timezone, officer=officer,
                                      officer_labels=labels)


@router.get("/stats", response_model=CaseStats, responses=FORBIDDEN,
            summary="统计: counts per day, violation, camera, grid cell and officer; rates; median decision time")
def stats(caller: Reviewer, review: Review, period: Period) -> CaseStats:
    return stats_for(caller, review, period)


@router.get("/stats.csv", response_class=Response, summary="The statistics as one CSV table (UTF-8 with BOM)",
            responses={**FORBIDDEN, 200: {"content": {"text/csv": {}}, "description": "A row per group value"}})
def stats_csv(caller: Reviewer, review: Review, period: Period) -> Response:
    figures = stats_for(caller, review, period)
    return _download(to_csv(figures), "text/csv; charset=utf-8", _file_name(figures, "csv"))


@router.get("/stats.xlsx", response_class=Response, summary="The statistics as a workbook, a sheet per grouping",
            responses={**FORBIDDEN, 200: {"content": {XLSX_TYPE: {}}, "description": "说明, 合计, 按日, ..."}})
def stats_xlsx(caller: Reviewer, review: Review, period: Period) -> Response:
    figures = stats_for(caller, review, period)
    zone = review.settings.display_timezone
    period_label = f"{show_local(figures.since, zone) or '不限'} 至 {show_local(figures.until, zone) or '今'}"
    return _download(to_xlsx(figures, period_label=period_label), XLSX_TYPE, _file_name(figures, "xlsx"))


def _file_name(figures: CaseStats, extension: str) -> str:
    days = [moment[:10] if moment else "all" for moment in (figures.since, figures.until)]
    return f"stats-{days[0]}-{days[1]}.{extension}"


def _download(data: bytes, media_type: str, file_name: str) -> Response:
    return Response(data, media_type=media_type, headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file_name, safe='')}"})
