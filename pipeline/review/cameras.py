"""The camera list: names and places from the camera files, live state and health from the workers.

Each worker publishes Prometheus text on its own ``/metrics`` (names in pipeline/engine/health.py).
A worker that does not answer leaves its cameras ``unknown``; it never fails the list.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import CameraConfig, load_cameras
from pipeline.vocabulary import CameraState, Metric

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
# A live camera whose newest frame is older than this is not healthy, whatever its state says.
STALE_FRAME_S = 15.0
_GAUGES = {
    Metric.CAMERA_STATE_SINCE: "state_since",
    Metric.RECEIVED_FPS: "received_fps",
    Metric.ANALYSED_FPS: "analysed_fps",
    Metric.LAG: "lag_s",
    Metric.LAST_FRAME: "last_frame_at",
    Metric.RECONNECTS_LAST_HOUR: "reconnects_last_hour",
    Metric.STALLS_LAST_HOUR: "stalls_last_hour",
}


@dataclass
class CameraStatus:
    camera_id: str
    name: str
    address: str | None = None
    grid_code: str | None = None
    lat: float | None = None
    lon: float | None = None
    zones: list[str] = field(default_factory=list)
    state: str = UNKNOWN
    worker: str | None = None  # the metrics URL that reported it
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def last_frame_age_s(self) -> float | None:
        at = self.figures.get("last_frame_at")
        return None if at is None else max(0.0, time.time() - at)

    @property
    def health(self) -> str:
        """ok | degraded | down | unknown, for a reader who wants one word."""
        if self.state == UNKNOWN:
            return UNKNOWN
        if self.state == CameraState.LIVE:
            age = self.last_frame_age_s
            return "ok" if age is not None and age <= STALE_FRAME_S else "degraded"
        if self.state in (CameraState.CONNECTING, CameraState.STALLED):
            return "degraded"
        return "down"


@dataclass(frozen=True)
class WorkerStatus:
    url: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class CameraSnapshot:
    cameras: list[CameraStatus]
    workers: list[WorkerStatus]


@dataclass(frozen=True)
class PlaceNames:
    """The display names the camera files give cameras and zones, for pages that show cases."""

    cameras: dict[str, str]  # camera id -> name
    zones: dict[tuple[str, str], str]  # (camera id, zone id) -> name, for the zones that have one

    def camera(self, camera_id: str) -> str:
        return self.cameras.get(camera_id, camera_id)

    def zone(self, zone_id: str, camera_id: str | None = None) -> str:
        """The zone's name, else its id; without a camera, the name any camera gives a zone of that id."""
        if camera_id is not None:
            return self.zones.get((camera_id, zone_id), zone_id)
        return next((name for (_, zone), name in self.zones.items() if zone == zone_id), zone_id)


class CameraBoard:
    def __init__(self, streams_dir: Path | None, metrics_urls: Sequence[str], *, timeout_s: float) -> None:
        """Reads the camera files now, so a bad one stops startup instead of a request (ConfigError)."""
        self._configs: list[CameraConfig] = load_cameras(streams_dir) if streams_dir is not None else []
        self.place_names = PlaceNames(cameras={config.id: config.name for config in self._configs},
                                      zones={(config.id, zone.id): zone.name for config in self._configs
                                             for zone in config.zones if zone.name})
        self._metrics_urls = list(metrics_urls)
        self._timeout_s = timeout_s

    def snapshot(self) -> CameraSnapshot:
        cameras = {config.id: _from_config(config) for config in self._configs}
        workers = []
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(self._metrics_urls)))) as pool:
            scraped = list(pool.map(self._scrape, self._metrics_urls))
        for url, (figures_by_camera, error) in zip(self._metrics_urls, scraped, strict=True):
            workers.append(WorkerStatus(url, error is None, error))
            for camera_id, (state, figures) in figures_by_camera.items():
                camera = cameras.setdefault(camera_id, CameraStatus(camera_id, camera_id))
                camera.state, camera.figures, camera.worker = state, figures, url
        return CameraSnapshot(sorted(cameras.values(), key=lambda camera: camera.camera_id), workers)

    def _scrape(self, url: str) -> tuple[dict[str, tuple[str, dict[str, float]]], str | None]:
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as response:
                text = response.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
            return parse_camera_metrics(text), None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.info("worker metrics %s unavailable: %s", url, exc)
            return {}, f"{type(exc).__name__}: {exc}"


def parse_camera_metrics(text: str) -> dict[str, tuple[str, dict[str, float]]]:
    """``{camera_id: (state, {figure: value})}`` from a worker's Prometheus text."""
    states: dict[str, str] = {}
    figures: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            camera = sample.labels.get("camera")
            if camera is None:
                continue
            if sample.name == Metric.CAMERA_STATE:
                if sample.value == 1:
                    states[camera] = sample.labels.get("state", UNKNOWN)
                else:
                    states.setdefault(camera, UNKNOWN)
            elif sample.name in _GAUGES:
                figures.setdefault(camera, {})[_GAUGES[sample.name]] = float(sample.value)
    return {camera: (states.get(camera, UNKNOWN), figures.get(camera, {})) for camera in states.keys() | figures}


def _from_config(config: CameraConfig) -> CameraStatus:
    location = config.location
    return CameraStatus(camera_id=config.id, name=config.name, address=location.address,
                        grid_code=location.grid_code, lat=location.lat, lon=location.lon,
                        zones=[zone.id for zone in config.zones])
