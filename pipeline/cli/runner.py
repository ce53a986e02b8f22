"""Wires the stages together and owns the threads: the only module that knows all of them.

Replay runs one camera synchronously, as fast as the machine allows. A live patrol runs a decode
thread per camera (PyAV releases the GIL while decoding) that keeps only the newest analysis
frame, one inference loop that batches the cameras' newest frames through the detector, and a
small pool that writes evidence off the hot path.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.config import CameraConfig
from pipeline.detect import Detector
from pipeline.evidence import CameraInfo, EvidenceWriter
from pipeline.ingest import ClipError, LiveSource, PacketRing, SourceStats, decode
from pipeline.queue import CaseQueue
from pipeline.rules import RuleEngine
from pipeline.track import Tracker
from pipeline.types import CaseRecord, Detections, Frame, Violation

log = logging.getLogger(__name__)

CLIP_BEFORE_S = 8.0
CLIP_AFTER_S = 4.0


class CameraPipeline:
    """One camera's analysis state: tracker, rules, its clip ring and violations awaiting post-roll."""

    def __init__(self, camera: CameraConfig, case_namespace: str, *, ring_s: float = 30.0) -> None:
        self.camera = camera
        self.tracker = Tracker(analysis_fps=camera.analysis_fps)
        self.rules = RuleEngine(camera, case_namespace)
        self.ring = PacketRing(ring_s)
        self.stats = SourceStats()
        self.info = CameraInfo(camera.id, camera.name,
                               {**camera.location.model_dump(), "timezone": camera.timezone})
        self._pending: list[Violation] = []

    def analyse(self, frame: Frame, detections: Detections) -> list[Violation]:
        """Track and apply the rules; returns the violations whose clip post-roll has now been seen."""
        tracks = self.tracker.update(detections, frame.pts_s)
        self._pending.extend(self.rules.update(frame, tracks))
        self.stats.analysed += 1
        due = [v for v in self._pending if v.confirmed_s + CLIP_AFTER_S <= frame.pts_s]
        self._pending = [v for v in self._pending if v not in due]
        return due

    def flush(self) -> list[Violation]:
        """Violations still waiting for post-roll (the stream ended or the patrol stops)."""
        pending, self._pending = self._pending, []
        return pending


class CaseFiler:
    """Violation → evidence files → case on the queue; then tells every listener."""

    def __init__(self, writer: EvidenceWriter, queue: CaseQueue, model: dict,
                 listeners: Iterable[Callable[[CaseRecord, bool], None]] = ()) -> None:
        self.writer = writer
        self.queue = queue
        self.model = model
        self.listeners = list(listeners)

    def file(self, pipeline: CameraPipeline, violation: Violation) -> CaseRecord:
        filed = self.queue.get(violation.case_id)
        if filed is not None:  # a replay of the same stream: the filed evidence and its sha256s stand
            for listener in self.listeners:
                listener(filed, False)
            return filed
        try:
            clip = pipeline.ring.clip(violation.confirmed_s - CLIP_BEFORE_S, violation.confirmed_s + CLIP_AFTER_S)
        except (ClipError, OSError, ValueError) as exc:  # a case without a clip beats no case
            log.warning("case %s: no clip: %s", violation.case_id, exc)
            clip = None
        zone = next(z for z in pipeline.camera.zones if z.id == violation.zone_id)
        record = self.writer.write(violation, camera=pipeline.info,
                                   zone_polygon_px=zone.polygon_px(violation.trigger_frame.size),
                                   clip_mp4=clip, model=self.model)
        is_new = self.queue.publish(record)
        for listener in self.listeners:
            listener(record, is_new)
        return record


def case_line(record: CaseRecord, is_new: bool) -> str:
    again = "" if is_new else " (already filed)"
    return (f"[case] {record.case_id} {record.violation} {record.event_name} camera={record.camera_id} "
            f"zone={record.zone_id} t={record.confirmed_s:.1f}s dwell={record.dwell_s:.1f}s "
            f"score={record.score:.2f}{again}")


@dataclass
class ReplaySummary:
    frames_decoded: int
    frames_analysed: int
    seconds: float
    cases: int

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"replay: {self.frames_decoded} frames decoded, {self.frames_analysed} analysed in "
                f"{self.seconds:.1f}s ({self.analysed_fps:.1f} analysed fps), {self.cases} cases")


def replay(video: str, camera: CameraConfig, detector: Detector, filer: CaseFiler, *, cases_path: Path,
           evidence_root: Path | None, start_wall: float, progress: bool = False) -> ReplaySummary:
    """Runs the patrol over a file with no pacing; appends one JSON line per case to ``cases_path``."""
    pipeline = CameraPipeline(camera, case_namespace=f"replay:{Path(video).name}")
    cases_path.parent.mkdir(parents=True, exist_ok=True)
    filed = 0
    started = time.perf_counter()
    with cases_path.open("w", encoding="utf-8") as out, tqdm(
        desc=f"replay {Path(video).name}", unit="frame", disable=not progress
    ) as bar:

        def file(violations: list[Violation]) -> None:
            nonlocal filed
            for violation in violations:
                record = filer.file(pipeline, violation)
                out.write(json.dumps(case_summary(record, evidence_root), ensure_ascii=False) + "\n")
                out.flush()
                filed += 1

        try:
            for frame in decode(video, camera_id=camera.id, analysis_fps=camera.analysis_fps, ring=pipeline.ring,
                                stats=pipeline.stats, start_wall=start_wall):
                file(pipeline.analyse(frame, detector.detect([frame.image])[0]))
                bar.update(1)
        finally:  # a video that breaks off still files what it confirmed before the break
            file(pipeline.flush())
    return ReplaySummary(pipeline.stats.received, pipeline.stats.analysed, time.perf_counter() - started, filed)


def case_summary(record: CaseRecord, evidence_root: Path | None) -> dict:
    """The cases.jsonl line of one case."""

    def where(key: str) -> str:
        return str(evidence_root / key) if evidence_root is not None else key

    return {
        "case_id": record.case_id, "violation": record.violation, "camera_id": record.camera_id,
        "zone_id": record.zone_id, "track_id": record.track_id, "first_seen_s": round(record.first_seen_s, 3),
        "confirmed_s": round(record.confirmed_s, 3), "dwell_s": round(record.dwell_s, 3),
        "bbox": [round(float(v), 1) for v in record.bbox], "score": round(record.score, 4),
        "event_code": record.event_code, "event_name": record.event_name,
        "evidence": {name: where(item.key) for name, item in record.evidence.items()},
    }


@dataclass(frozen=True, eq=False)
class PatrolCamera:
    """A camera of a live patrol: its analysis state and its decode thread (see LiveSource)."""

    pipeline: CameraPipeline
    source: LiveSource

    @property
    def state(self) -> str:
        return self.source.state

    @property
    def last_error(self) -> str | None:
        return self.source.last_error

    @property
    def running(self) -> bool:
        return self.source.running


class HealthMeter:
    """Per-camera rates over the last interval; a dead stream's rates drop to 0."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._last: dict[str, tuple[float, int, int, int]] = {}
        self.lag_s: dict[str, float] = {}

    def line(self, camera: LiveSource) -> str:
        stats = camera.stats
        camera_id = camera.camera.id
        now = time.monotonic()
        then, received, analysed, skipped = self._last.get(camera_id, (self._started, 0, 0, 0))
        self._last[camera_id] = (now, stats.received, stats.analysed, stats.skipped)
        span = now - then
        rate = (lambda a, b: (a - b) / span) if span > 0 else (lambda a, b: 0.0)
        line = (f"[health] {camera_id} {camera.state} in={rate(stats.received, received):.1f}/s "
                f"analysed={rate(stats.analysed, analysed):.1f}/s skipped={rate(stats.skipped, skipped):.1f}/s "
                f"lag={self.lag_s.get(camera_id, 0.0):.2f}s reconnects={stats.reconnects} stalls={stats.stalls} "
                f"corrupt={stats.corrupt}")
        if camera.state != "live" and camera.last_error:
            line += f" error: {camera.last_error}"
        return line


class Patrol:
    """Live patrol over several cameras until ``stop()``."""

    def __init__(self, cameras: list[CameraConfig], detector: Detector, filer: CaseFiler, *, loop_files: bool,
                 health_every_s: float = 5.0, print_line: Callable[[str], None] = print) -> None:
        self.detector = detector
        self.filer = filer
        self.health_every_s = health_every_s
        self.print_line = print_line
        self._stop = threading.Event()
        self._wake = threading.Event()
        session = time.strftime("%Y%m%dT%H%M%S")
        self.cameras: list[PatrolCamera] = []
        for camera in cameras:
            pipeline = CameraPipeline(camera, case_namespace=f"live:{camera.id}:{session}")
            source = LiveSource(camera, pipeline.ring, pipeline.stats, loop_files=loop_files, wake=self._wake,
                                stop=self._stop)
            self.cameras.append(PatrolCamera(pipeline, source))
        self.health = HealthMeter()
        self._writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="evidence")
        # Each waiting job holds two full frames. When storage falls behind, the inference loop
        # waits here (its cameras skip frames) rather than memory growing or a case being dropped.
        self._writer_slots = threading.BoundedSemaphore(16)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, duration_s: float | None = None) -> None:
        for camera in self.cameras:
            camera.source.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_health = time.monotonic() + self.health_every_s
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if time.monotonic() >= next_health:
                    for camera in self.cameras:
                        self.print_line(self.health.line(camera.source))
                    next_health += self.health_every_s
                self._wake.wait(0.2)
                self._wake.clear()
                self._analyse_newest()
                for camera in self.cameras:
                    if camera.state not in ("live", "stalled"):  # no newer frame is coming to release its post-roll
                        for violation in camera.pipeline.flush():
                            self._submit(camera.pipeline, violation)
                if not any(camera.running for camera in self.cameras):
                    break
        finally:
            self.stop()
            for camera in self.cameras:
                camera.source.join(timeout=10)
            self._analyse_newest()  # frames decoded before the stop still count
            for camera in self.cameras:
                for violation in camera.pipeline.flush():
                    self._submit(camera.pipeline, violation)
            self._writers.shutdown(wait=True)  # every confirmed violation is written before exit

    def _analyse_newest(self) -> None:
        batch = [(camera, frame) for camera in self.cameras if (frame := camera.source.take()) is not None]
        if not batch:
            return
        detections = self.detector.detect([frame.image for _, frame in batch])
        for (camera, frame), dets in zip(batch, detections, strict=True):
            for violation in camera.pipeline.analyse(frame, dets):
                self._submit(camera.pipeline, violation)
            self.health.lag_s[camera.pipeline.camera.id] = time.time() - frame.wall_ts

    def _submit(self, pipeline: CameraPipeline, violation: Violation) -> None:
        self._writer_slots.acquire()
        future = self._writers.submit(self.filer.file, pipeline, violation)
        future.add_done_callback(self._release_slot)

    def _release_slot(self, future: Future) -> None:
        self._writer_slots.release()
        if future.exception() is not None:
            log.error("filing a case failed", exc_info=future.exception())

