"""One rule in one zone over time: objects dwell, confirm once, and outlive renumbered tracks.

Episodes also outlive the worker that watched them: ``snapshot`` writes them out on the wall
clock and ``adopt`` takes them in on another worker (or the same one restarted), so a camera that
moves keeps its dwell clocks and its filed cases keep their ids instead of being filed again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from pipeline.config import RuleConfig
from pipeline.types import Detections, Frame, Violation, as_bbox

from .boxes import box_iou, shared_shift
from .case_id import case_id


@dataclass(slots=True, eq=False)
class Episode:
    """One object's stay in a zone: a candidate until its dwell is reached, then a filed case."""

    track_id: int
    role: str
    ordinal: int  # among episodes of this zone and rule whose dwell started on the same frame
    first_seen_s: float
    first_seen_wall: float  # the wall clock of first_seen_s: the same on every worker
    first_bbox: np.ndarray
    # Dropped at confirmation: from then on the Violation carries it. None also for a candidate
    # adopted from another worker until this one sees it (its first look here stands in).
    first_frame: Frame | None
    last_seen_s: float
    last_bbox: np.ndarray
    score_sum: float
    observations: int
    # The best look during the dwell (largest box x score; a big, sure box shows a plate best):
    # one frame per episode, dropped at confirmation like first_frame.
    best_frame: Frame | None = None
    best_bbox: np.ndarray | None = None
    best_quality: float = 0.0
    confirmed: bool = False
    case_id: str | None = None  # given at confirmation
    # (pts, box) of the last drift_window_s, to tell a moving object from a parked one
    trail: deque[tuple[float, np.ndarray]] = field(default_factory=deque)  # (stream time, box)

    @property
    def dwell_s(self) -> float:
        return self.last_seen_s - self.first_seen_s


class EpisodeTracker:
    """Turns the objects that satisfy one rule in one zone, frame by frame, into one case per episode."""

    def __init__(self, rule: RuleConfig, camera_id: str, zone_id: str, case_namespace: str, *,
                 wall_clock_ids: bool = False) -> None:
        self._rule = rule
        self._camera_id = camera_id
        self._zone_id = zone_id
        self._case_id = partial(case_id, case_namespace, camera_id, zone_id, rule.type)
        # A replayed file names its cases by stream time (the same ids on every replay); a live
        # camera by wall time, the one clock that workers taking over from each other share.
        self._wall_clock_ids = wall_clock_ids
        self._episodes: list[Episode] = []

    @property
    def episodes(self) -> tuple[Episode, ...]:
        return tuple(self._episodes)

    def update(self, frame: Frame, objects: Detections) -> list[Violation]:
        """Feed this frame's objects that satisfy the rule here; returns the cases confirmed on it."""
        now = frame.pts_s
        self._episodes = [e for e in self._episodes if now - e.last_seen_s <= self._patience_s(e)]
        due: list[Episode] = []  # candidates whose dwell is reached on this frame
        for index, episode in enumerate(self._associate(objects)):
            box = objects.xyxy[index].astype(np.float64)
            if episode is None:
                self._episodes.append(self._start(frame, objects, index))
            elif self._moving(episode, box, now):
                # A candidate that moves starts over where it is now. A case's object that moved
                # off its spot is simply not seen there, so the case lapses after the cool-down.
                if not episode.confirmed:
                    self._episodes[self._episodes.index(episode)] = self._start(frame, objects, index)
            else:
                if episode.first_frame is None and not episode.confirmed:
                    episode.first_frame = frame
                episode.last_seen_s = now
                episode.last_bbox = box
                self._remember_position(episode, now, box)
                episode.role = str(objects.role[index])
                episode.score_sum += float(objects.score[index])
                episode.observations += 1
                if not episode.confirmed:
                    _remember_if_best(episode, frame, box, float(objects.score[index]))
                if not episode.confirmed and episode.dwell_s >= self._rule.dwell_s:
                    due.append(episode)
        if self._rule.quorum > 1 and due:
            return self._confirm_heap(due, frame)
        return [self._confirm(episode, frame) for episode in due]

    def _confirm_heap(self, due: list[Episode], frame: Frame) -> list[Violation]:
        """With a quorum, the objects dwelling in the zone together are one case (a heap of bikes
        is one obstruction, not one case per bike). It is filed once at least ``quorum`` of them
        have dwelt, under the longest-dwelling one seen on this frame, boxed around them all.
        While it is open, every object that has dwelt joins it instead of being filed; it stays
        open while any of its objects is within its cool-down, so a heap whose first bike left
        is not filed again."""
        open_case = next((e for e in self._episodes if e.confirmed), None)
        if open_case is not None:
            for episode in due:
                _close(episode, open_case.case_id)
            return []
        dwelt = [e for e in self._episodes if not e.confirmed and e.dwell_s >= self._rule.dwell_s]
        if len(dwelt) < self._rule.quorum:
            return []  # they wait as candidates; each goes on dwelling (or lapses after max_gap_s)
        # The others join on their next frame, as the heap's case is open then.
        violation = self._confirm(min(due, key=lambda e: e.first_seen_s), frame)
        boxes = np.stack([e.last_bbox for e in dwelt])
        heap = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
        return [replace(violation, bbox=as_bbox(heap))]

    def _patience_s(self, episode: Episode) -> float:
        return self._rule.cooldown_s if episode.confirmed else self._rule.max_gap_s

    def _moving(self, episode: Episode, box: np.ndarray, now: float) -> bool:
        """Whether the box moved more than max_drift over the last drift_window_s."""
        if self._rule.max_drift is None:
            return False
        trail = episode.trail
        while len(trail) > 1 and trail[1][0] <= now - self._rule.drift_window_s:
            trail.popleft()
        return shared_shift(trail[0][1], box) > self._rule.max_drift

    def _remember_position(self, episode: Episode, now: float, box: np.ndarray) -> None:
        if self._rule.max_drift is not None:  # only movement checks read the trail, and they trim it
            episode.trail.append((now, box))

    def _associate(self, objects: Detections) -> list[Episode | None]:
        """The episode each object continues, by track id, else by IoU with an episode unseen
        this frame (the tracker lost the object and gave it a new id); None starts a new one."""
        if len(objects) == 0:
            return []
        track_ids = objects.track_id.tolist()
        by_track = {episode.track_id: episode for episode in self._episodes}
        matches: list[Episode | None] = [by_track.get(track_id) for track_id in track_ids]
        rows = [i for i, episode in enumerate(matches) if episode is None]
        unseen = [e for e in self._episodes if not any(e is m for m in matches)]
        if rows and unseen:
            iou = box_iou(objects.xyxy[rows], np.stack([e.last_bbox for e in unseen]))
            free_cols = set(range(len(unseen)))
            for row, col in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
                if iou[row, col] < self._rule.match_iou:
                    break
                if matches[rows[row]] is None and col in free_cols:
                    free_cols.remove(col)
                    unseen[col].track_id = track_ids[rows[row]]
                    matches[rows[row]] = unseen[col]
        return matches

    def _start(self, frame: Frame, objects: Detections, index: int) -> Episode:
        box = objects.xyxy[index].astype(np.float64)
        episode = Episode(
            track_id=int(objects.track_id[index]),
            role=str(objects.role[index]),
            ordinal=sum(e.first_seen_s == frame.pts_s for e in self._episodes),
            first_seen_s=frame.pts_s,
            first_seen_wall=frame.wall_ts,
            first_bbox=box,
            first_frame=frame,
            last_seen_s=frame.pts_s,
            last_bbox=box,
            score_sum=float(objects.score[index]),
            observations=1,
            trail=deque([(frame.pts_s, box)]),
        )
        _remember_if_best(episode, frame, box, float(objects.score[index]))
        return episode

    def _confirm(self, episode: Episode, frame: Frame) -> Violation:
        assert episode.first_frame is not None, "only candidates are confirmed"
        violation = Violation(
            case_id=self._case_id(episode.first_seen_wall if self._wall_clock_ids else episode.first_seen_s,
                                  episode.ordinal),
            kind=self._rule.type,
            camera_id=self._camera_id,
            zone_id=self._zone_id,
            track_id=episode.track_id,
            role=episode.role,
            first_seen_s=episode.first_seen_s,
            confirmed_s=episode.last_seen_s,
            bbox=as_bbox(episode.last_bbox),
            score=episode.score_sum / episode.observations,
            first_frame=episode.first_frame,
            first_bbox=as_bbox(episode.first_bbox),
            trigger_frame=frame,
            best_frame=episode.best_frame,
            best_bbox=as_bbox(episode.best_bbox),
            event=self._rule.event,
        )
        _close(episode, violation.case_id)
        return violation

    def snapshot(self, wall_minus_pts: float, unfiled: Collection[str] = ()) -> list[dict]:
        """The episodes as JSON-ready dicts on the wall clock (``wall_minus_pts``: this stream's
        wall time minus its pts); pictures stay behind. A confirmed episode whose case is in
        ``unfiled`` (not on the spool yet) is saved as a candidate past its dwell, so the run that
        adopts it confirms and files it again rather than taking it for filed."""
        return [{
            "role": e.role, "ordinal": e.ordinal, "first_seen_wall": e.first_seen_wall,
            "last_seen_wall": e.last_seen_s + wall_minus_pts,
            "first_bbox": e.first_bbox.tolist(), "last_bbox": e.last_bbox.tolist(), "score_sum": e.score_sum,
            "observations": e.observations, "confirmed": e.confirmed and e.case_id not in unfiled,
        } for e in self._episodes]

    def adopt(self, saved: list[dict], frame: Frame) -> None:
        """Takes in episodes another run saved with ``snapshot``, on the first ``frame`` of this run.

        Nobody watched the camera between that run's last look and this frame, so an episode
        counts as seen up to now: a candidate's dwell goes on and a filed case's cool-down starts
        again, rather than the same parked car being filed twice. They match objects by box
        (``match_iou``), as episodes whose track was lost do.
        """
        wall_minus_pts = frame.wall_ts - frame.pts_s
        for item in saved:
            first_bbox = np.asarray(item["first_bbox"], dtype=np.float64)
            last_bbox = np.asarray(item["last_bbox"], dtype=np.float64)
            self._episodes.append(Episode(
                track_id=-1, role=str(item["role"]), ordinal=int(item["ordinal"]),
                first_seen_s=float(item["first_seen_wall"]) - wall_minus_pts,
                first_seen_wall=float(item["first_seen_wall"]), first_bbox=first_bbox, first_frame=None,
                last_seen_s=frame.pts_s, last_bbox=last_bbox, score_sum=float(item["score_sum"]),
                observations=int(item["observations"]), confirmed=bool(item["confirmed"]),
                trail=deque([(frame.pts_s, last_bbox)]),
            ))


def _close(episode: Episode, case_id: str | None) -> None:
    """Marks the episode filed under ``case_id``; its pictures are the Violation's from now on."""
    episode.confirmed, episode.case_id = True, case_id
    episode.first_frame = None
    episode.best_frame = None


_SAVED_NUMBERS = ("ordinal", "first_seen_wall", "last_seen_wall", "score_sum", "observations")


def check_saved_episode(item: object) -> None:
    """ValueError unless ``item`` is one episode as ``EpisodeTracker.snapshot`` writes it."""
    if not isinstance(item, dict):
        raise ValueError(f"a saved episode is a mapping, not {type(item).__name__}")
    missing = [key for key in ("role", "confirmed", "first_bbox", "last_bbox", *_SAVED_NUMBERS) if key not in item]
    if missing:
        raise ValueError(f"a saved episode lacks {', '.join(missing)}")
    boxes = (item["first_bbox"], item["last_bbox"])
    if not all(isinstance(box, list) and len(box) == 4 for box in boxes):
        raise ValueError("a saved episode's boxes must be lists of 4 numbers")
    numbers = [item[key] for key in _SAVED_NUMBERS] + [*boxes[0], *boxes[1]]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and np.isfinite(n) for n in numbers):
        raise ValueError("a saved episode has times, counts or boxes that are not finite numbers")
    if not isinstance(item["role"], str) or not isinstance(item["confirmed"], bool):
        raise ValueError("a saved episode's role must be text and confirmed true or false")


def _remember_if_best(episode: Episode, frame: Frame, box: np.ndarray, score: float) -> None:
    quality = float((box[2] - box[0]) * (box[3] - box[1])) * score
    if episode.best_frame is None or quality > episode.best_quality:
        episode.best_frame, episode.best_bbox, episode.best_quality = frame, box, quality

