"""The rules stage: one stateful engine per camera turns tracked objects into violations."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time

import numpy as np

from pipeline.config import CameraConfig, RuleConfig
from pipeline.types import BBox, Detections, Frame, Violation, as_bbox

from .episodes import EpisodeTracker, check_saved_episode
from .zone_mask import ZoneMask


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live episode, for drawing and debugging: dwelling towards a case, or already filed."""

    kind: str
    track_id: int
    dwell_s: float  # from the start of the dwell to when the object was last seen
    confirmed: bool
    bbox: BBox  # where it was last seen


class _ZoneRule:
    """One rule of one zone: which of a frame's objects it is about, and their episodes."""

    def __init__(
        self, camera_id: str, zone_id: str, rule: RuleConfig, mask: ZoneMask, case_namespace: str, *,
        wall_clock_ids: bool,
    ) -> None:
        self.zone_id = zone_id
        self.rule = rule
        self.tracker = EpisodeTracker(rule, camera_id, zone_id, case_namespace, wall_clock_ids=wall_clock_ids)
        self._mask = mask
        self._roles = [str(role) for role in rule.roles]

    def select(self, tracks: Detections, frame_size: tuple[int, int], local: time) -> Detections:
        keep = np.isin(tracks.role, self._roles) & self.rule.active_at(local)
        if keep.any():
            boxes = tracks.xyxy[keep]
            if self.rule.containment == "bottom_center":
                keep[keep] = self._mask.bottom_centres_inside(boxes, frame_size)
            else:
                keep[keep] = self._mask.overlap_fractions(boxes, frame_size) >= self.rule.min_overlap
        return tracks[keep]


class RuleEngine:
    """Feed it every analysed frame of one camera, in pts order, with that frame's tracks.

    Case ids come from the stream clock (a replayed file gets the same ids every time) or, with
    ``wall_clock_ids``, from the wall clock (a live camera, whichever worker watches it).
    """

    def __init__(self, camera: CameraConfig, case_namespace: str, *, wall_clock_ids: bool = False) -> None:
        self.camera = camera
        self._zone_rules: list[_ZoneRule] = []
        for zone in camera.zones:
            mask = ZoneMask(zone)  # shared, so a zone is rasterised once whatever its rules
            self._zone_rules += [
                _ZoneRule(camera.id, zone.id, rule, mask, case_namespace, wall_clock_ids=wall_clock_ids)
                for rule in zone.rules
            ]
        self._last_pts_s: float | None = None
        self._wall_minus_pts: float | None = None
        self._adopt: dict | None = None

    def update(self, frame: Frame, tracks: Detections) -> list[Violation]:
        """The cases confirmed on this frame; each episode is reported exactly once."""
        if frame.camera_id != self.camera.id:
            raise ValueError(f"frame of camera {frame.camera_id!r} fed to the engine of {self.camera.id!r}")
        if self._last_pts_s is not None and frame.pts_s < self._last_pts_s:
            raise ValueError(
                f"pts went back from {self._last_pts_s} to {frame.pts_s}; start a new RuleEngine"
                " for a new stream run"
            )
        if len(tracks) and tracks.track_id is None:
            raise ValueError("rules need tracked detections (track_id is None)")
        self._last_pts_s = frame.pts_s
        self._wall_minus_pts = frame.wall_ts - frame.pts_s
        if self._adopt is not None:
            self._take_in(self._adopt, frame)
            self._adopt = None
        local = datetime.fromtimestamp(frame.wall_ts, self.camera.tz).time()
        violations: list[Violation] = []
        for zone_rule in self._zone_rules:
            objects = zone_rule.select(tracks, frame.size, local)
            violations += zone_rule.tracker.update(frame, objects)
        return violations

    def snapshot(self, unfiled: Collection[str] = ()) -> dict:
        """Every live episode, on the wall clock, by ``zone_id/rule type``: for ``adopt`` on the
        worker that watches this camera next; the cases in ``unfiled`` count as not filed yet.
        Before the first frame: what it was given to adopt."""
        if self._wall_minus_pts is None:
            return self._adopt or {}
        return {f"{r.zone_id}/{r.rule.type}": r.tracker.snapshot(self._wall_minus_pts, unfiled)
                for r in self._zone_rules}

    def adopt(self, saved: dict) -> None:
        """Takes in a ``snapshot`` of an earlier run of this camera; applied on the next frame.
        Episodes of zones or rules this camera no longer has are dropped. ValueError, and nothing
        taken in, when ``saved`` is not what ``snapshot`` gives (a damaged or foreign file): it
        is checked here, not on the next frame, where it would stop the patrol."""
        if not isinstance(saved, dict):
            raise ValueError(f"an episode snapshot is a mapping of zone/rule to episodes, not {type(saved).__name__}")
        for key, episodes in saved.items():
            if not isinstance(episodes, list):
                raise ValueError(f"episode snapshot {key!r}: expected a list of episodes")
            for item in episodes:
                check_saved_episode(item)
        self._adopt = saved

    def _take_in(self, saved: dict, frame: Frame) -> None:
        for zone_rule in self._zone_rules:
            episodes = saved.get(f"{zone_rule.zone_id}/{zone_rule.rule.type}")
            if episodes:
                zone_rule.tracker.adopt(episodes, frame)

    def candidates(self) -> dict[str, list[Candidate]]:
        """Live episodes by zone id (every zone present), as of the last update."""
        by_zone: dict[str, list[Candidate]] = {zone.id: [] for zone in self.camera.zones}
        for zone_rule in self._zone_rules:
            by_zone[zone_rule.zone_id] += [
                Candidate(
                    kind=zone_rule.rule.type,
                    track_id=episode.track_id,
                    dwell_s=episode.dwell_s,
                    confirmed=episode.confirmed,
                    bbox=as_bbox(episode.last_bbox),
                )
                for episode in zone_rule.tracker.episodes
            ]
        return by_zone
