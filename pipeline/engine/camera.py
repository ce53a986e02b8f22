"""One camera's analysis state and the one path every analysed frame takes through it.

rate → gate → (detect, by the caller, batched or not) → track → rules → post-roll: replay, the
live patrol and the stage benchmark all call ``CameraPipeline.step`` for each analysed frame.

A violation is filed the moment it is confirmed, with the clip recorded so far; the post-roll only
completes its clip (``clips_recorded``), so a worker killed meanwhile has already spooled it.
"""

from __future__ import annotations

import threading

from pipeline.config import CameraConfig
from pipeline.detect import MotionGate
from pipeline.engine.analysis_rate import AnalysisRate
from pipeline.engine.timing import StageTimer
from pipeline.evidence import CameraInfo
from pipeline.evidence.render import CLIP_AFTER_S
from pipeline.ingest import PacketRing, SourceStats
from pipeline.rules import RuleEngine
from pipeline.track import TRACK_LOST_S, Tracker
from pipeline.types import Detections, Frame, Violation


class CameraPipeline:
    """One camera's analysis state: tracker, rules, its clip ring and the clips awaiting post-roll."""

    def __init__(self, camera: CameraConfig, case_namespace: str, *, ring_s: float = 30.0,
                 wall_clock_ids: bool = False) -> None:
        self.camera = camera
        self.rate = AnalysisRate.for_camera(camera)
        # At the still rate a look that misses an object leaves two still periods unseen: its track must outlive them.
        lost_s = TRACK_LOST_S if self.rate is None else max(TRACK_LOST_S, 2 * self.rate.still_period_s)
        self.tracker = Tracker(analysis_fps=camera.analysis_fps, lost_s=lost_s)
        self.rules = RuleEngine(camera, case_namespace, wall_clock_ids=wall_clock_ids)
        self.ring = PacketRing(ring_s)
        self.stats = SourceStats()
        self.info = CameraInfo(camera.id, camera.name,
                               {**camera.location.model_dump(), "timezone": camera.timezone})
        self.inference_s = 0.0  # this camera's share of batched inference time
        self.last_frame: Frame | None = None  # the picture a camera-fault case shows
        self.gate = MotionGate.for_camera(camera) if camera.motion_gating.enabled else None
        self.gated = 0  # analysed frames that reused the previous detections instead of running the network
        self.passed_over = 0  # sampled frames the adaptive rate left unanalysed while every zone was still
        self._last_detections = Detections.empty()
        self._recording: list[tuple[float, str]] = []  # (post-roll end, case id) of clips still recorded
        # Confirmed but not on the spool yet (being rendered, or held for a full disk): the episodes
        # saved meanwhile say so, and a worker killed now leaves them for the next one to file.
        self._unfiled: set[str] = set()
        self._unfiled_lock = threading.Lock()

    @property
    def analysis_fps(self) -> float:
        """The rate the camera is analysed at now (below its analysis_fps while the adaptive rate finds it still)."""
        return self.camera.analysis_fps if self.rate is None else self.rate.fps

    def analyses(self, frame: Frame) -> bool:
        """False when the adaptive rate passes the frame over: it is neither detected nor given to
        ``step``, and stream time, which dwell is measured on, goes on without it. Ask for every
        sampled frame, in order, before ``needs_detection``."""
        if self.rate is None or self.rate.analyses(frame.image, frame.pts_s):
            return True
        self.passed_over += 1
        return False

    def needs_detection(self, frame: Frame) -> bool:
        """False when motion gating is on and the frame shows what the last detected one showed."""
        return self.gate is None or self.gate.needs_detection(frame.image, frame.pts_s)

    def step(self, frame: Frame, detections: Detections | None, timer: StageTimer | None = None) -> list[Violation]:
        """Tracks and applies the rules to one analysed frame; returns the violations confirmed on
        it, to file at once: their clips' post-roll is still to come (``clips_recorded``).

        ``detections`` None: the frame was not detected (``needs_detection`` said so), the last
        detections stand for it. ``timer`` gets a ``track`` and a ``rules`` mark.
        """
        if detections is None:
            detections = self._last_detections
            self.gated += 1
        else:
            self._last_detections = detections
        tracks = self.tracker.update(detections, frame.pts_s)
        if timer is not None:
            timer.mark("track")
        confirmed = self.rules.update(frame, tracks)
        if confirmed:
            with self._unfiled_lock:
                self._unfiled.update(v.case_id for v in confirmed)
            self._recording += [(v.confirmed_s + CLIP_AFTER_S, v.case_id) for v in confirmed]
        if timer is not None:
            timer.mark("rules")
        self.stats.analysed += 1
        self.last_frame = frame
        return confirmed

    def clips_recorded(self) -> list[str]:
        """The cases whose clip's post-roll the last analysed frame has reached: their clips are whole."""
        if self.last_frame is None:
            return []
        now = self.last_frame.pts_s
        done = [case_id for end_s, case_id in self._recording if end_s <= now]
        self._recording = [(end_s, case_id) for end_s, case_id in self._recording if end_s > now]
        return done

    def filed(self, case_id: str) -> None:
        """The case is on the spool (or was filed before): its episode may be saved as filed."""
        with self._unfiled_lock:
            self._unfiled.discard(case_id)

    def unfiled_case_ids(self) -> frozenset[str]:
        with self._unfiled_lock:
            return frozenset(self._unfiled)

    def flush(self) -> list[str]:
        """The cases whose clip's post-roll will not come (the stream ended or the patrol stops):
        their clips end where the ring does."""
        recording, self._recording = self._recording, []
        return [case_id for _, case_id in recording]
