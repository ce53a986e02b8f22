"""The map (地图): every camera by its coordinates with its health, and the open cases at their cameras.

Anyone logged in sees the cameras and their health, which says no more than that a camera's picture
arrives. The cases only reach officers and supervisors, who see the case list too; an admin, who
sees no case (auth.py), gets the cameras alone. The page (/map) draws this as SVG on the officer's
screen (static/map.js): no tile, font or script comes from outside unless an operator has set a
tile server (ReviewSettings.map_tiles), whose tiles are then drawn underneath.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from pipeline.review.auth import REVIEWERS, Caller
from pipeline.review.case_map import HEALTH_LABELS, MAX_MAP_CASES, OpenCase
from pipeline.review.routers.dependencies import FORBIDDEN, AnyUser, Review
from pipeline.review.services import ReviewServices
from pipeline.review.vocabulary import CAMERA_STATE_LABELS, STATUS_LABELS, violation_label

router = APIRouter(tags=["map"])


class MapCamera(BaseModel):
    camera_id: str
    name: str
    address: str | None
    grid_code: str | None
    lat: float | None = Field(description="WGS-84; None for a camera only a worker reports, which the map lists")
    lon: float | None
    state: str
    state_label: str
    health: str = Field(description="ok | degraded | down | unknown, as /api/cameras has it")
    health_label: str
    open_cases: int = Field(description="the open cases at this camera that the filter selects and the map shows")


class MapCase(BaseModel):
    case_id: str
    camera_id: str
    camera_name: str
    violation: str
    violation_label: str
    status: str
    status_label: str
    confirmed_wall: str
    deadline: str | None
    overdue: bool
    recheck_failed: bool = Field(description="复核未通过: the camera found it still there past the deadline")
    lat: float | None = Field(description="its camera's location now, else the one it was filed with")
    lon: float | None
    url: str = Field(description="the case's page")


class MapTiles(BaseModel):
    url_template: str = Field(description="{z}/{x}/{y} of 256-pixel Web Mercator tiles")
    attribution: str | None


class MapOut(BaseModel):
    cameras: list[MapCamera]
    cases: list[MapCase] = Field(description="newest first, at most max_cases of them")
    cases_shown: bool = Field(description="False for an admin, who sees no case")
    total_open: int = Field(description="every open case the filter selects, those beyond max_cases included")
    max_cases: int
    violation: str | None
    overdue_only: bool
    workers_down: int = Field(description="workers whose /metrics did not answer: their cameras are unknown")
    tiles: MapTiles | None = Field(description="None: no tiles, the SVG alone")
    summary: str = Field(description="the figures in a line of Chinese, as the page shows them")


def build_map(caller: Caller, review: ReviewServices, *, violation: str | None, overdue_only: bool) -> MapOut:
    snapshot = review.cameras.snapshot()
    shown = caller.user.role in REVIEWERS
    found = review.store.open_cases.find(violation=violation, overdue=overdue_only) if shown else None
    places = {camera.camera_id: (camera.lat, camera.lon) for camera in snapshot.cameras if camera.lat is not None}
    cases = [_case(case, places.get(case.camera_id)) for case in (found.cases if found else [])]
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.camera_id] = counts.get(case.camera_id, 0) + 1
    cameras = [MapCamera(camera_id=camera.camera_id, name=camera.name, address=camera.address,
                         grid_code=camera.grid_code, lat=camera.lat, lon=camera.lon, state=camera.state,
                         state_label=CAMERA_STATE_LABELS.get(camera.state, camera.state), health=camera.health,
                         health_label=HEALTH_LABELS[camera.health], open_cases=counts.get(camera.camera_id, 0))
               for camera in snapshot.cameras]
    settings = review.settings
    tiles = MapTiles(url_template=settings.map_tiles, attribution=settings.map_attribution) \
        if settings.map_tiles else None
    total = found.total if found else 0
    return MapOut(cameras=cameras, cases=cases, cases_shown=shown, total_open=total, max_cases=MAX_MAP_CASES,
                  violation=violation, overdue_only=overdue_only,
                  workers_down=sum(not worker.ok for worker in snapshot.workers), tiles=tiles,
                  summary=_summary(cameras, cases if shown else None, total))


def _summary(cameras: list[MapCamera], cases: list[MapCase] | None, total: int) -> str:
    """摄像头 2 个（正常 1、未知 1）；待办案件 5 件（超期 1 件）; without cases (an admin's) the cameras alone."""
    health = [f"{label} {count}" for key, label in HEALTH_LABELS.items()
              if (count := sum(camera.health == key for camera in cameras))]
    text = f"摄像头 {len(cameras)} 个" + (f"（{'、'.join(health)}）" if health else "")
    if cases is None:
        return text + "；系统管理员不查看案件，地图只显示摄像头"
    text += f"；待办案件 {total} 件（超期 {sum(case.overdue for case in cases)} 件）"
    unplaced = sum(case.lat is None or case.lon is None for case in cases)
    if total > len(cases):
        text += f"，地图只显示最新 {len(cases)} 件"
    if unplaced:
        text += f"；{unplaced} 件没有坐标，未画在地图上"
    return text


def _case(case: OpenCase, place: tuple[float | None, float | None] | None) -> MapCase:
    lat, lon = place or (case.lat, case.lon)
    return MapCase(case_id=case.case_id, camera_id=case.camera_id, camera_name=case.camera_name,
                   violation=case.violation, violation_label=violation_label(case.violation),
                   status=case.status.value, status_label=STATUS_LABELS[case.status],
                   confirmed_wall=case.confirmed_wall, deadline=case.deadline, overdue=case.overdue,
                   recheck_failed=case.recheck_failed, lat=lat, lon=lon, url=f"/cases/{case.case_id}")


@router.get("/map", response_model=MapOut, responses=FORBIDDEN,
            summary="地图: cameras by their coordinates with their health, and the open cases at their cameras")
def case_map(caller: AnyUser, review: Review,
             violation: Annotated[str | None, Query(max_length=64, description="only this violation kind")] = None,
             overdue: Annotated[bool, Query(description="only dispatched cases past their deadline (超期)")] = False,
             ) -> MapOut:
    return build_map(caller, review, violation=violation or None, overdue_only=overdue)
