"""The schema of one camera file (``streams/*.yaml``): where the stream is and what to enforce."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import Field, Strict, StringConstraints, ValidationInfo, field_validator, model_validator

from .rules import RuleConfig
from .strict_model import Seconds, StrictModel

# Ids end up in case ids and storage keys, so they must be safe on every filesystem and URL.
Slug = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$"),
    Field(description="Lowercase letters, digits, '-' and '_' (at most 64), starting alphanumeric."),
]
# Strict: YAML's `yes` or "0.5" where a number belongs is a mistake, not a coordinate.
UnitCoordinate = Annotated[float, Strict(), Field(ge=0, le=1)]
# Bounds on free text: a name or address is shown on every case page and filed with every case.
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2048
# A zone drawn by hand has a handful of corners; the crossing check compares every pair of edges.
MAX_CORNERS = 100
# Smaller than about 14 x 14 px in a 1080p frame: almost certainly collinear or repeated points.
MIN_POLYGON_AREA = 1e-4
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _is_stream(url: str) -> bool:
    """A URL of a stream rather than a video file (a path or ``file://``)."""
    return bool(_URL_SCHEME.match(url)) and not url.lower().startswith("file://")


class Location(StrictModel):
    """Where the camera is, as filed with every case."""

    lat: Annotated[float, Strict()] = Field(ge=-90, le=90, description="Latitude, WGS-84 degrees.")
    lon: Annotated[float, Strict()] = Field(ge=-180, le=180, description="Longitude, WGS-84 degrees.")
    address: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Street address shown to reviewers.")
    grid_code: Annotated[str, Strict()] | None = Field(
        None,
        max_length=64,
        description="City-management grid code (网格编码). Quote it in YAML: leading zeros matter.",
    )


class ZoneConfig(StrictModel):
    """An area of the picture and the rules enforced inside it."""

    id: Slug = Field(description="Zone id, unique within the camera; part of every case id.")
    name: str | None = Field(
        None, max_length=MAX_NAME_CHARS, description="What reviewers call the zone, e.g. 北侧人行道; else its id."
    )
    polygon: list[tuple[UnitCoordinate, UnitCoordinate]] = Field(
        min_length=3,
        max_length=MAX_CORNERS,
        description=(
            "Corners [x, y] as fractions 0..1 of frame width and height (not pixels), in order around"
            " the zone; its edges may not cross."
        ),
    )
    rules: list[RuleConfig] = Field(
        min_length=1, description="What to enforce here; at most one rule of each type."
    )

    @field_validator("polygon")
    @classmethod
    def _encloses_area(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        x, y = np.asarray(polygon).T
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        if area < MIN_POLYGON_AREA:
            raise ValueError(
                f"polygon encloses almost no area ({area:.2g} of the frame);"
                " are points collinear, repeated or crossing?"
            )
        return polygon

    @field_validator("polygon")
    @classmethod
    def _is_simple(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        # A crossing outline has no clear inside: a bow-tie's middle would be in and out at once.
        if polygon[-1] == polygon[0]:
            raise ValueError("the last corner repeats the first: leave it out, the polygon closes itself")
        first_index: dict[tuple[float, float], int] = {}
        for index, corner in enumerate(polygon):
            if corner in first_index:
                raise ValueError(f"corners {first_index[corner]} and {index} are the same point")
            first_index[corner] = index
        crossing = _first_crossing(np.asarray(polygon, dtype=np.float64))
        if crossing is not None:
            first, second = crossing
            raise ValueError(
                f"edges {first} and {second} cross or touch (edge i runs from corner i to the next);"
                " list the corners in order around the zone"
            )
        return polygon

    @field_validator("rules")
    @classmethod
    def _one_rule_per_type(cls, rules: list[RuleConfig]) -> list[RuleConfig]:
        # Case ids are keyed on zone and rule type; for a second policy draw a second zone.
        types = [rule.type for rule in rules]
        repeated = sorted({t for t in types if types.count(t) > 1})
        if repeated:
            raise ValueError(f"more than one rule of type {', '.join(repeated)} in this zone")
        return rules

    def polygon_px(self, frame_size: tuple[int, int]) -> np.ndarray:
        """Corners in pixels, ``(N, 2)`` int32, for a frame of ``(width, height)``."""
        width, height = frame_size
        return np.round(np.asarray(self.polygon) * (width, height)).astype(np.int32)


def _first_crossing(corners: np.ndarray) -> tuple[int, int] | None:
    """The first edges ``(i, j)``, ``i < j``, that cross or touch anywhere but at a corner they share;
    None for a simple polygon. Edge i runs from corner i to the next; corners must not repeat."""
    p, q = corners[:, None], np.roll(corners, -1, axis=0)[:, None]  # edge i, along the first axis
    r, s = p.transpose(1, 0, 2), q.transpose(1, 0, 2)  # edge j, along the second

    def turn(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Sign of the turn a -> b -> c: which side of line ab point c lies on (0: on it)."""
        cross = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        return np.sign(cross)

    def lies_on(a: np.ndarray, b: np.ndarray, c: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Point c on segment ab, other than at its ends (where neighbouring edges meet): on the line,
        with the ends in opposite directions from it."""
        return (side == 0) & (((a - c) * (b - c)).sum(-1) < 0)

    r_side, s_side, p_side, q_side = turn(p, q, r), turn(p, q, s), turn(r, s, p), turn(r, s, q)
    crossing = (r_side * s_side < 0) & (p_side * q_side < 0)
    touching = lies_on(p, q, r, r_side) | lies_on(p, q, s, s_side) | lies_on(r, s, p, p_side) | lies_on(r, s, q, q_side)
    first, second = np.nonzero(np.triu(crossing | touching, k=1))
    return (int(first[0]), int(second[0])) if len(first) else None


class IngestConfig(StrictModel):
    """How the camera's stream is read, watched and reconnected (all optional).

    A connected stream that delivers no picture for ``stall_after_s`` is reported stalled; the
    connection itself is dropped and retried only after ``read_timeout_s`` without data, so
    ``stall_after_s`` at or below ``read_timeout_s`` reports a hung camera before it is reconnected.
    (A hung RTSP camera is dropped after about twice ``read_timeout_s``: at the first timeout
    FFmpeg's RTSP reader hands over the packets it still holds, at the second it gives up.)
    """

    open_timeout_s: Seconds = Field(
        10.0, gt=0, description="Seconds allowed for connecting and for each step of reading the stream headers."
    )
    read_timeout_s: Seconds = Field(
        10.0, gt=0, description="Seconds without data after which a connected stream is dropped and reconnected."
    )
    stall_after_s: Seconds = Field(
        10.0,
        gt=0,
        description=(
            "Seconds without a decoded picture after which a connected stream is reported stalled"
            " (best at or below read_timeout_s)."
        ),
    )
    reconnect_min_s: Seconds = Field(
        0.5, gt=0, description="Shortest wait before reconnecting; waits double per failure, with full jitter."
    )
    reconnect_max_s: Seconds = Field(
        30.0, gt=0, description="Longest wait between reconnect attempts."
    )
    offline_fault_after_s: Seconds = Field(
        300.0, gt=0, description="Seconds offline after which the camera is reported faulty (a camera-fault case)."
    )

    @model_validator(mode="after")
    def _ordered_backoff(self) -> IngestConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s:g}) is more than reconnect_max_s ({self.reconnect_max_s:g})"
            )
        return self


def _min_changed_field(until: str) -> Any:
    return Field(
        0.002,
        gt=0,
        lt=1,
        description=(
            "Share of the picture (compared as a 160-pixel-wide grey thumbnail, each pixel a block"
            f" average) that must change {until}."
        ),
    )


class MotionGatingConfig(StrictModel):
    """Skipping the detector on frames where nothing moved (off unless ``enabled``).

    With gating on, a frame that differs from the last detected one by less than ``min_changed``
    reuses that frame's detections: tracking, dwell and rules go on as before, the network does
    not run. Off by default because a case's pictures then may carry boxes found up to
    ``refresh_s`` earlier on a picture the gate judged the same, and because on the real parking
    lot of ``patrol eval`` reused boxes kept a flickering detection alive through a dwell: one case
    the ground truth does not have (README, Performance). Turn it on for quiet views (side
    streets, night hours), where it saves most. ``motion_gating: true`` is short for
    ``motion_gating: {enabled: true}``.
    """

    enabled: bool = Field(False, description="Skip the detector on frames that did not change.")
    min_changed: float = _min_changed_field("since the last detected frame for the detector to run again")
    refresh_s: Seconds = Field(
        2.0,
        gt=0,
        description=(
            "Seconds of stream time after which the detector runs again even on an unchanged picture;"
            " must be shorter than every rule's dwell_s."
        ),
    )
    zones_only: bool = Field(
        True,
        description=(
            "Count only change inside the camera's zones (slightly widened): traffic passing outside"
            " every zone cannot make a case, so it does not wake the detector. false: change anywhere."
        ),
    )


class AdaptiveRateConfig(StrictModel):
    """Analysing a camera less often while its zones are still (on unless ``enabled: false``: on
    every evaluation video it filed the same cases as the full rate, README, Performance).

    The camera is analysed at its full ``analysis_fps`` while anything moves in a zone (the motion
    gate's comparison, counted inside the zones only) and for ``settle_s`` after, so a newcomer is
    tracked until it stands; then at ``still_fps`` until something moves again, and the first
    frame that moves is analysed. Dwell stays measured on stream time: a case is confirmed at the
    first look after its dwell is reached, at most one still period late. ``adaptive_rate: false``
    is short for ``adaptive_rate: {enabled: false}``.
    """

    enabled: bool = Field(True, description="Slow the analysis down while every zone is still.")
    still_fps: float = Field(
        1.0,
        gt=0,
        le=30,
        description=(
            "Frames per second analysed while every zone is still (at or above analysis_fps: never"
            " slower); two still periods must fit in every rule's max_gap_s."
        ),
    )
    settle_s: Seconds = Field(
        3.0,
        ge=0,
        description="Seconds of stream time at the full rate after the last motion in a zone.",
    )
    min_changed: float = _min_changed_field(
        "inside the zones since the last analysed frame for the camera to go back to its full analysis_fps"
    )


class CameraConfig(StrictModel):
    """One street camera: its stream, where it stands and the zones it watches."""

    id: Slug = Field(description="Camera id; part of case ids and evidence keys.")
    name: str = Field(
        min_length=1, max_length=MAX_NAME_CHARS, description="Human-readable name shown to reviewers."
    )
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description=(
            "Stream URL (rtsp://, http://, ...) or a video file path; a relative path is taken"
            " from the folder of the camera file. With detect_url, the main stream: recorded for the"
            " evidence, not analysed."
        ),
    )
    detect_url: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_URL_CHARS,
        description=(
            "The camera's low-resolution sub-stream, as url (a stream, or a file when url is one): when"
            " given it is the one decoded and analysed at analysis_fps, while url (the main stream) is"
            " only demuxed, its packets kept for the clip, and decoded only around a case for"
            " full-resolution photos, crop and plate (the sub-stream's when the main stream is down,"
            " and the case says so). Zones are fractions of the frame, so they hold in both streams."
        ),
    )
    analysis_fps: float = Field(
        5.0, gt=0, le=30, description="Frames per second handed to detection and rules."
    )
    timezone: str = Field(
        "Asia/Shanghai",
        max_length=64,
        description="IANA time zone of the camera's local clock, used for rule hours and case times.",
    )
    location: Location = Field(description="Where the camera is.")
    zones: list[ZoneConfig] = Field(min_length=1, description="Zones and their rules.")
    ingest: IngestConfig = Field(
        default_factory=IngestConfig, description="Stream timeouts, stall detection and reconnect backoff."
    )
    motion_gating: MotionGatingConfig = Field(
        default_factory=MotionGatingConfig,
        description="Skip the detector on unchanged frames (off by default); true or false, or its settings.",
    )
    adaptive_rate: AdaptiveRateConfig = Field(
        default_factory=AdaptiveRateConfig,
        description="Analyse at still_fps while every zone is still (on by default); true or false, or its settings.",
    )

    @field_validator("motion_gating", "adaptive_rate", mode="before")
    @classmethod
    def _enabled_shorthand(cls, value: object) -> object:
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _refresh_within_dwell(self) -> CameraConfig:
        # A change the gate misses is caught at the next refresh: that must come before any dwell
        # could complete on stale boxes alone.
        gating = self.motion_gating
        if gating.enabled:
            shortest = min(rule.dwell_s for zone in self.zones for rule in zone.rules)
            if gating.refresh_s >= shortest:
                raise ValueError(
                    f"motion_gating.refresh_s ({gating.refresh_s:g}) must be shorter than the shortest rule"
                    f" dwell_s ({shortest:g})"
                )
        return self

    @model_validator(mode="after")
    def _still_looks_within_gap(self) -> CameraConfig:
        # A still look that misses a parked car (a passing bus, a low score) leaves a gap of two
        # still periods: a candidate unseen longer than its rule's max_gap_s starts its dwell over.
        rate = self.adaptive_rate
        if rate.enabled and rate.still_fps < self.analysis_fps:
            shortest = min(rule.max_gap_s for zone in self.zones for rule in zone.rules)
            if 2 / rate.still_fps > shortest:
                raise ValueError(
                    f"adaptive_rate.still_fps ({rate.still_fps:g}) is too low: two still periods"
                    f" ({2 / rate.still_fps:g} s) must fit in the shortest rule max_gap_s ({shortest:g})"
                )
        return self

    @field_validator("url", "detect_url")
    @classmethod
    def _resolve_file_path(cls, url: str | None, info: ValidationInfo) -> str | None:
        base_dir = (info.context or {}).get("base_dir")
        if url is None or base_dir is None or _URL_SCHEME.match(url) or Path(url).is_absolute():
            return url
        return str((Path(base_dir) / url).resolve())

    @model_validator(mode="after")
    def _two_inputs_of_one_kind(self) -> CameraConfig:
        # The streams' clocks are reconciled on the arrival of their packets, files' on their own
        # timestamps: a stream and a file have no clock in common.
        if self.detect_url is not None:
            if self.detect_url == self.url:
                raise ValueError("detect_url is the same as url: leave it out to analyse url itself")
            if _is_stream(self.detect_url) != _is_stream(self.url):
                raise ValueError("detect_url and url must both be streams or both be video files")
        return self

    @property
    def analysed_url(self) -> str:
        """The input decoded and analysed: the sub-stream when there is one, else ``url``."""
        return self.detect_url or self.url

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name like Asia/Shanghai") from None
        return name

    @field_validator("zones")
    @classmethod
    def _unique_zone_ids(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        first_index: dict[str, int] = {}
        for index, zone in enumerate(zones):
            if zone.id in first_index:
                raise ValueError(
                    f"duplicate zone id {zone.id!r} (zones[{first_index[zone.id]}] and zones[{index}])"
                )
            first_index[zone.id] = index
        return zones

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
