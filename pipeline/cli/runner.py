"""Wires the stages together and owns the threads: the only module that knows all of them.

Replay runs one camera as fast as the machine allows, in three stages on their own threads, each
a few frames ahead of the next: decoding, the network, and decoding its output, tracking, rules
and filing. A live patrol runs a decode thread per camera (PyAV releases the GIL while decoding)
that keeps only the newest analysis frame, one inference loop that batches the cameras' newest
frames through the detector (waiting a short flush deadline for the other cameras' frames), and a
small pool that writes evidence off the hot path. A camera with motion gating on skips the
network on frames where nothing changed and reuses its last detections.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

import pipeline
from pipeline.cli.faults import FaultWatch, FileFault, Recovered
from pipeline.cli.health import CameraReport, Counters, PatrolReport, RateWindow, health_line, spool_line
from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector, MotionGate
from pipeline.evidence import CameraInfo, EvidenceStore, EvidenceWriter, LocalEvidenceStore, load_event_codes
from pipeline.evidence.writer import CameraFault
from pipeline.ingest import ClipError, LiveSource, PacketRing, SourceStats, StateChange, decode
from pipeline.ingest.source import is_live_url
from pipeline.queue import CaseQueue, SqliteCaseQueue
from pipeline.queue.spool import CaseSpool, Listener, SpoolDrainer
from pipeline.rules import RuleEngine
from pipeline.rules.memory import EpisodeMemory
from pipeline.track import Tracker
from pipeline.types import BackendUnavailable, CaseNote, CaseRecord, Detections, Frame, Violation

log = logging.getLogger(__name__)

CLIP_BEFORE_S = 8.0
CLIP_AFTER_S = 4.0


class CameraPipeline:
    """One camera's analysis state: tracker, rules, its clip ring and violations awaiting post-roll."""

    def __init__(self, camera: CameraConfig, case_namespace: str, *, ring_s: float = 30.0,
                 wall_clock_ids: bool = False) -> None:
        self.camera = camera
        self.tracker = Tracker(analysis_fps=camera.analysis_fps)
        self.rules = RuleEngine(camera, case_namespace, wall_clock_ids=wall_clock_ids)
        self.ring = PacketRing(ring_s)
        self.stats = SourceStats()
        self.info = CameraInfo(camera.id, camera.name,
                               {**camera.location.model_dump(), "timezone": camera.timezone})
        self.inference_s = 0.0  # this camera's share of batched inference time
        self.last_frame: Frame | None = None  # the picture a camera-fault case shows
        self.gate = MotionGate.for_camera(camera) if camera.motion_gating.enabled else None
        self.gated = 0  # analysed frames that reused the previous detections instead of running the network
        self._last_detections = Detections.empty()
        self._pending: list[Violation] = []

    def needs_detection(self, frame: Frame) -> bool:
        """False when motion gating is on and the frame shows what the last detected one showed."""
        return self.gate is None or self.gate.needs_detection(frame.image, frame.pts_s)

    def analyse(self, frame: Frame, detections: Detections | None) -> list[Violation]:
        """Track and apply the rules; returns the violations whose clip post-roll has now been seen.

        ``detections`` None: the frame was not detected (``needs_detection`` said so), the last
        detections stand for it.
        """
        if detections is None:
            detections = self._last_detections
            self.gated += 1
        else:
            self._last_detections = detections
        tracks = self.tracker.update(detections, frame.pts_s)
        self._pending.extend(self.rules.update(frame, tracks))
        self.stats.analysed += 1
        self.last_frame = frame
        due = [v for v in self._pending if v.confirmed_s + CLIP_AFTER_S <= frame.pts_s]
        self._pending = [v for v in self._pending if v not in due]
        return due

    def flush(self) -> list[Violation]:
        """Violations still waiting for post-roll (the stream ended or the patrol stops)."""
        pending, self._pending = self._pending, []
        return pending


class CaseFiler:
    """Violation → evidence files → write-ahead spool; the spool's drainer then delivers each case to
    the evidence store and the case queue and tells every listener ``(record, is_new)``.

    A case reaches local disk before any backend is asked, so an outage of Redis or S3, or a kill
    of the worker, delays a case but never loses it.
    """

    def __init__(self, writer: EvidenceWriter, queue: CaseQueue, model: dict, *, spool: CaseSpool,
                 listeners: Iterable[Listener] = ()) -> None:
        self.writer = writer
        self.queue = queue
        self.model = model
        self.spool = spool
        self.drainer = SpoolDrainer(spool, writer.store, queue, listeners=listeners)
        self.listeners = self.drainer.listeners  # one list: listeners added later hear deliveries too
        self._started = False

    @classmethod
    def embedded(cls, root: Path, model: dict) -> CaseFiler:
        """The embedded default under ``root``: ``evidence/``, ``cases.sqlite3`` and ``spool/``."""
        writer = EvidenceWriter(LocalEvidenceStore(root / "evidence"), load_event_codes(), pipeline.__version__)
        return cls(writer, SqliteCaseQueue(root / "cases.sqlite3"), model, spool=CaseSpool(root / "spool"))

    def start(self) -> CaseFiler:
        if not self._started:
            self.drainer.start()
            self._started = True
        return self

    def file(self, pipeline: CameraPipeline, violation: Violation) -> None:
        filed = self._filed(violation.case_id)
        if filed is not None:  # a replay of the same stream: the filed evidence and its sha256s stand
            for listener in self.listeners:
                listener(filed, False)
            return
        if self.spool.holds(violation.case_id):
            return  # spooled by the run this one restarted; the drainer delivers it
        try:
            clip = pipeline.ring.clip(violation.confirmed_s - CLIP_BEFORE_S, violation.confirmed_s + CLIP_AFTER_S)
        except (ClipError, OSError, ValueError) as exc:  # a case without a clip beats no case
            log.warning("case %s: no clip: %s", violation.case_id, exc)
            clip = None
        zone = next(z for z in pipeline.camera.zones if z.id == violation.zone_id)
        self._spool(violation.case_id, lambda store: self.writer.write(
            violation, camera=pipeline.info, zone_polygon_px=zone.polygon_px(violation.trigger_frame.size),
            clip_mp4=clip, model=self.model, store=store))

    def file_fault(self, pipeline: CameraPipeline, fault: CameraFault) -> None:
        self._spool(fault.case_id, lambda store: self.writer.write_camera_fault(
            fault, camera=pipeline.info, model=self.model, store=store))

    def add_note(self, note: CaseNote) -> None:
        self.spool.add_note(note)
        self.drainer.wake()

    def close(self, drain_timeout_s: float) -> int:
        """Delivers what it can within ``drain_timeout_s``; returns how many entries stay spooled."""
        if self._started:
            self.drainer.wait_empty(drain_timeout_s)
            self.drainer.stop()
        left = len(self.spool.entries())
        self.spool.close()
        self.queue.close()
        return left

    def _filed(self, case_id: str) -> CaseRecord | None:
        try:
            return self.queue.get(case_id)
        except BackendUnavailable:  # cannot tell now; the drainer checks again before publishing
            return None

    def _spool(self, case_id: str, write: Callable[[EvidenceStore], CaseRecord]) -> None:
        staged = self.spool.stage(case_id)
        try:
            record = write(staged.files)
            self.spool.commit(staged, record)
        except BaseException:
            self.spool.discard(staged)
            raise
        self.drainer.wake()


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
    cases: int  # cases that reached the queue (or were found there already)
    spooled: int = 0  # cases still on local disk, waiting for a backend
    outages: int = 0  # times a backend became unreachable during the run
    frames_gated: int = 0  # analysed frames on which motion gating spared the network

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        line = (f"replay: {self.frames_decoded} frames decoded, {self.frames_analysed} analysed in "
                f"{self.seconds:.1f}s ({self.analysed_fps:.1f} analysed fps), {self.cases} cases")
        if self.frames_gated:
            line += f"; motion gating spared the network {self.frames_gated} frames"
        if self.outages:
            line += f"; backends were unreachable {self.outages} time(s), the spool held the cases meanwhile"
        if self.spooled:
            line += f"; {self.spooled} case(s) still wait in the spool for a backend"
        return line


PREFETCH_FRAMES = 4  # decoded frames waiting for the network: enough to ride out a slow keyframe
ANALYSIS_BACKLOG = 4  # frames beyond those in the network, waiting for tracking and rules


class Prefetch(Iterator):
    """Runs an iterator on its own thread, at most ``depth`` items ahead of the consumer; an error
    it raises is raised to the consumer where it happened in the sequence."""

    def __init__(self, source: Iterator, *, depth: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def __next__(self):
        kind, item = self._queue.get()
        if kind == "item":
            return item
        self._queue.put((kind, item))  # asked again after the end: the same answer
        if kind == "error":
            raise item
        raise StopIteration

    def close(self) -> None:
        """Stops the thread (the source is closed on it) and waits for it."""
        self._closed.set()
        self._thread.join()

    def _run(self, source: Iterator) -> None:
        try:
            for item in source:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except Exception as exc:  # noqa: BLE001 - not handled here: raised to the consumer
            self._put(("error", exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def replay(video: str, camera: CameraConfig, detector: FrameDetector, filer: CaseFiler, *, cases_path: Path,
           evidence_root: Path | None, start_wall: float, progress: bool = False,
           drain_timeout_s: float = 60.0) -> ReplaySummary:
    """Runs the patrol over a file with no pacing; appends one JSON line per case to ``cases_path``
    as each reaches the queue, and waits up to ``drain_timeout_s`` at the end for the spool.

    Decoding, the detector (``detector.parallel_runs`` frames at once) and the rest (tracking,
    rules, filing, in frame order) run on their own threads, so on a multi-core machine the
    network never waits for the others."""
    pipeline = CameraPipeline(camera, case_namespace=f"replay:{Path(video).name}")
    cases_path.parent.mkdir(parents=True, exist_ok=True)
    filed = 0
    lock = threading.Lock()
    started = time.perf_counter()
    with cases_path.open("w", encoding="utf-8") as out, tqdm(
        desc=f"replay {Path(video).name}", unit="frame", disable=not progress
    ) as bar:

        written: set[str] = set()

        def record_case(record: CaseRecord, is_new: bool) -> None:
            nonlocal filed
            with lock:
                if record.case_id in written:  # met again after a restart: delivered from the spool and re-confirmed
                    return
                written.add(record.case_id)
                out.write(json.dumps(case_summary(record, evidence_root), ensure_ascii=False) + "\n")
                out.flush()
                filed += 1

        def analyse(frame: Frame, inference: Future[list[Detections]] | None) -> None:
            detections = None if inference is None else inference.result()[0]
            for violation in pipeline.analyse(frame, detections):
                filer.file(pipeline, violation)
            bar.update(1)

        filer.listeners.append(record_case)
        filer.start()
        frames = Prefetch(decode(video, camera_id=camera.id, analysis_fps=camera.analysis_fps, ring=pipeline.ring,
                                 stats=pipeline.stats, start_wall=start_wall),
                          depth=PREFETCH_FRAMES, name=f"decode-{camera.id}")
        # a stand-in for the detector (tests) is called one frame at a time, in frame order
        runs = detector.parallel_runs if isinstance(detector, FrameDetector) else 1
        network = ThreadPoolExecutor(max_workers=runs, thread_name_prefix=f"detect-{camera.id}")
        analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"analysis-{camera.id}")
        backlog = threading.BoundedSemaphore(runs + ANALYSIS_BACKLOG)
        jobs: deque[Future] = deque()
        try:
            for frame in frames:
                while jobs and jobs[0].done():
                    jobs.popleft().result()  # an analysis that failed stops the replay here
                backlog.acquire()
                inference = network.submit(detector.detect, [frame.image]) if pipeline.needs_detection(frame) else None
                jobs.append(analysis.submit(analyse, frame, inference))
                jobs[-1].add_done_callback(lambda _: backlog.release())
            for job in jobs:
                job.result()
        finally:  # a video that breaks off still files what it confirmed before the break
            frames.close()
            network.shutdown(wait=True)
            analysis.shutdown(wait=True)
            for violation in pipeline.flush():
                filer.file(pipeline, violation)
            delivered = filer.drainer.wait_empty(drain_timeout_s)
            filer.listeners.remove(record_case)
    spooled = 0 if delivered else len(filer.spool.entries())
    return ReplaySummary(pipeline.stats.received, pipeline.stats.analysed, time.perf_counter() - started, filed,
                         spooled, filer.drainer.outages, pipeline.gated)


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


class CameraEvents:
    """Times of a camera's reconnects and stalls over the last hour, from its state changes."""

    def __init__(self) -> None:
        self.reconnects: deque[float] = deque(maxlen=100_000)
        self.stalls: deque[float] = deque(maxlen=100_000)

    def record(self, change: StateChange) -> None:
        if change.new == "offline":
            self.reconnects.append(change.wall_ts)
        elif change.new == "stalled":
            self.stalls.append(change.wall_ts)

    @staticmethod
    def last_hour(times: deque[float], now: float) -> int:
        return sum(1 for t in list(times) if t > now - 3600)


@dataclass(eq=False)
class PatrolCamera:
    """A camera of a live patrol: its analysis state, its decode thread (see LiveSource), its health."""

    pipeline: CameraPipeline
    source: LiveSource
    events: CameraEvents
    faults: FaultWatch | None  # None for file sources: a file is no camera that can fail
    stop: threading.Event  # this camera's own: a fleet worker hands single cameras over
    rates: RateWindow = field(default_factory=RateWindow)
    lag_s: float | None = None

    @property
    def state(self) -> str:
        return self.source.state

    @property
    def last_error(self) -> str | None:
        return self.source.last_error

    @property
    def running(self) -> bool:
        return self.source.running

    def counters(self) -> Counters:
        stats = self.pipeline.stats
        return Counters(stats.received, stats.analysed, stats.skipped, stats.decode_s, self.pipeline.inference_s,
                        self.pipeline.gated)

    def report(self, now: float) -> CameraReport:
        stats = self.pipeline.stats
        return CameraReport(
            camera_id=self.pipeline.camera.id, state=self.state, state_since=self.source.state_since,
            counters=self.counters(), rates=self.rates.rates(), lag_s=self.lag_s,
            last_frame_wall=stats.last_frame_wall, reconnects=stats.reconnects, stalls=stats.stalls,
            corrupt=stats.corrupt, reconnects_last_hour=CameraEvents.last_hour(self.events.reconnects, now),
            stalls_last_hour=CameraEvents.last_hour(self.events.stalls, now), last_error=self.last_error)


class Patrol:
    """Live patrol over several cameras until ``stop()``.

    The inference loop runs the cameras' newest frames through the detector as one batch of up to
    ``max_batch`` frames (default: one per camera). The first frame of a batch waits at most
    ``batch_deadline_s`` for the other live cameras' frames, so cameras whose frames arrive out of
    step still share a run of the network (what makes a GPU worth it) at a bounded cost in lag.
    Tracking and rules of a batch run on their own thread while the network takes the next batch;
    filing evidence runs on two more.

    Cameras can be added and removed while it runs (a fleet worker's leases). A live camera's case
    ids come from the wall clock and its episodes are saved to ``memory`` every few seconds and
    when it leaves, and taken back when it is added again, here or on another worker: the same
    parked car is not filed twice across a restart or a move. ``until_stopped`` keeps it running
    with no camera left (a fleet worker waiting for leases).
    """

    SAVE_EPISODES_EVERY_S = 2.0

    def __init__(self, cameras: list[CameraConfig], detector: FrameDetector, filer: CaseFiler, *, loop_files: bool,
                 health_every_s: float = 5.0, print_line: Callable[[str], None] = print,
                 max_batch: int | None = None, batch_deadline_s: float = 0.1,
                 memory: EpisodeMemory | None = None, until_stopped: bool = False) -> None:
        self.detector = detector
        self.filer = filer
        self.health_every_s = health_every_s
        self.print_line = print_line
        self._max_batch = max_batch
        self.batch_deadline_s = batch_deadline_s
        self.memory = memory
        self.until_stopped = until_stopped
        self.loop_tick = time.monotonic()  # last pass of the inference loop: a fleet renews leases only while it moves
        self._loop_files = loop_files
        self._waiting: dict[PatrolCamera, Frame] = {}  # the next batch: each camera's newest frame, not analysed yet
        self._waiting_since = 0.0  # monotonic time the oldest of them was taken
        self._stop = threading.Event()
        self._stop_asked = False  # by a signal: see stop_soon
        self._wake = threading.Event()
        self._changes: queue.SimpleQueue[tuple[str, object, Future]] = queue.SimpleQueue()
        # Replaced, never changed in place: /metrics and the fleet read it from other threads.
        self.cameras: list[PatrolCamera] = [self._open(camera) for camera in cameras]
        # One thread, so each camera's frames are tracked in order; two batches at most wait for it.
        self._analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")
        self._analysis_slots = threading.BoundedSemaphore(2)
        self._analysis_jobs: deque[Future] = deque()
        self._writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="evidence")
        # Each waiting job holds two full frames. When storage falls behind, the inference loop
        # waits here (its cameras skip frames) rather than memory growing or a case being dropped.
        self._writer_slots = threading.BoundedSemaphore(16)

    @property
    def max_batch(self) -> int:
        return max(1, self._max_batch or len(self.cameras))

    def stop_soon(self) -> None:
        """``stop`` for a signal handler: it only sets a flag, which the loop reads on its next turn
        (within 0.2 s). A handler runs on the main thread between two bytecodes, perhaps inside
        ``Event.wait`` holding the lock that ``stop`` would take again."""
        self._stop_asked = True

    def stop(self) -> None:
        self._stop.set()
        for camera in self.cameras:
            camera.stop.set()
        self._wake.set()

    def add_camera(self, camera: CameraConfig) -> Future:
        """Starts watching ``camera`` (taking in its saved episodes); done once its source runs."""
        return self._change("add", camera)

    def remove_camera(self, camera_id: str, *, save_episodes: bool = True) -> Future:
        """Stops watching a camera. Done once its confirmed violations are spooled and (with
        ``save_episodes``) its episodes saved for whoever watches it next."""
        return self._change("remove", (camera_id, save_episodes))

    def _change(self, kind: str, what: object) -> Future:
        done: Future = Future()
        self._changes.put((kind, what, done))
        self._wake.set()
        return done

    def _open(self, camera: CameraConfig) -> PatrolCamera:
        live = is_live_url(camera.url)
        pipeline = CameraPipeline(camera, case_namespace=f"live:{camera.id}", wall_clock_ids=True)
        if live and self.memory is not None:  # a file starts again from its beginning: nothing carries over
            try:
                pipeline.rules.adopt(self.memory.load(camera.id))
            except BackendUnavailable as exc:
                log.warning("camera %s: its saved episodes are out of reach (%s); starting afresh", camera.id, exc)
        events = CameraEvents()
        stop = threading.Event()
        source = LiveSource(camera, pipeline.ring, pipeline.stats, loop_files=self._loop_files, wake=self._wake,
                            stop=stop, on_state=events.record)
        watch = FaultWatch(camera.id, camera.ingest.offline_fault_after_s, time.time()) if live else None
        return PatrolCamera(pipeline, source, events, watch, stop)

    def _apply_changes(self) -> None:
        while True:
            try:
                kind, what, done = self._changes.get_nowait()
            except queue.Empty:
                return
            if not done.set_running_or_notify_cancel():
                continue
            try:
                if kind == "add":
                    if any(c.pipeline.camera.id == what.id for c in self.cameras):
                        raise ValueError(f"camera {what.id} is already watched")
                    camera = self._open(what)
                    camera.source.start()
                    self.cameras = [*self.cameras, camera]
                    done.set_result(camera)
                else:
                    camera_id, save = what
                    camera = next((c for c in self.cameras if c.pipeline.camera.id == camera_id), None)
                    if camera is None:
                        raise KeyError(f"camera {camera_id} is not watched")
                    camera.stop.set()
                    self.cameras = [c for c in self.cameras if c is not camera]
                    self._waiting.pop(camera, None)
                    self._after_analysis(self._hand_over, camera, save, done)
            except Exception as exc:  # noqa: BLE001 - handed to whoever asked for the change
                done.set_exception(exc)

    def _hand_over(self, camera: PatrolCamera, save: bool, done: Future) -> None:
        try:
            filed = [self._submit(self.filer.file, camera.pipeline, v) for v in camera.pipeline.flush()]
            for future in filed:
                future.result()
            if save:
                self._save_episodes([camera], wait=True)
            done.set_result(None)
        except Exception as exc:  # noqa: BLE001 - handed to whoever asked for the change
            done.set_exception(exc)

    def report(self) -> PatrolReport:
        """The figures of the health lines and /metrics, read from the live counters."""
        now = time.time()
        drainer = self.filer.drainer
        return PatrolReport(
            cameras=[camera.report(now) for camera in self.cameras],
            cases_filed=drainer.delivered,
            spool_entries=len(self.filer.spool.entries()),
            backend_error=drainer.backend_error,
        )

    def run(self, duration_s: float | None = None) -> None:
        self.filer.start()
        for camera in self.cameras:
            camera.source.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_health = time.monotonic() + self.health_every_s
        next_save = time.monotonic() + self.SAVE_EPISODES_EVERY_S
        try:
            while not self._stop.is_set() and not self._stop_asked:
                self.loop_tick = time.monotonic()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._apply_changes()
                if self.memory is not None and time.monotonic() >= next_save:
                    self._after_analysis(self._save_episodes, self.cameras)
                    next_save = time.monotonic() + self.SAVE_EPISODES_EVERY_S
                for camera in self.cameras:
                    camera.rates.sample(camera.counters())
                    self._watch_faults(camera)
                if time.monotonic() >= next_health:
                    self._print_health()
                    next_health += self.health_every_s
                self._wake.wait(self._batch_wait_s())
                self._wake.clear()
                self._take_newest()
                if self._batch_due():
                    self._analyse_waiting()
                ended = [camera for camera in self.cameras if camera.state not in ("live", "stalled")]
                if ended:  # no newer frame is coming to release their post-roll
                    self._after_analysis(self._flush, ended)
                self._raise_analysis_errors()
                if not self.until_stopped and not any(camera.running for camera in self.cameras):
                    break
        finally:
            self.stop()
            for camera in self.cameras:
                camera.source.join(timeout=10)
            self._take_newest()
            self._analyse_waiting()  # frames decoded before the stop still count
            self._analysis.shutdown(wait=True)
            self._flush(self.cameras)
            self._save_episodes(self.cameras, wait=True)
            self._writers.shutdown(wait=True)  # every confirmed violation is spooled before exit
            self._refuse_changes()
        self._raise_analysis_errors()

    def _refuse_changes(self) -> None:
        while True:
            try:
                _, _, done = self._changes.get_nowait()
            except queue.Empty:
                return
            if done.set_running_or_notify_cancel():
                done.set_exception(RuntimeError("the patrol has stopped"))

    def _save_episodes(self, cameras: list[PatrolCamera], *, wait: bool = False) -> None:
        """Snapshots the live cameras' episodes here, on the analysis thread, between two batches;
        stores them on a writer thread (or at once with ``wait``), so an unreachable store never
        holds up analysis."""
        if self.memory is None:
            return
        snapshots = {c.pipeline.camera.id: c.pipeline.rules.snapshot() for c in cameras if c.faults is not None}
        if not snapshots:
            return
        if wait:
            self._store_episodes(snapshots)
        else:
            self._submit(self._store_episodes, snapshots)

    def _store_episodes(self, snapshots: dict[str, dict]) -> None:
        try:
            self.memory.save(snapshots)
        except (BackendUnavailable, OSError) as exc:
            log.warning("saving the episodes of %d camera(s) failed: %s", len(snapshots), exc)

    def _print_health(self) -> None:
        report = self.report()
        for camera in report.cameras:
            self.print_line(health_line(camera))
        if (line := spool_line(report)) is not None:
            self.print_line(line)

    def _watch_faults(self, camera: PatrolCamera) -> None:
        if camera.faults is None:
            return
        now = time.time()
        event = camera.faults.observe(camera.state, now)
        if isinstance(event, FileFault):
            source = camera.source
            fault = CameraFault(
                case_id=event.case_id, since_wall=event.since_wall, filed_wall=now,
                stream_s=source.stats.stream_s or 0.0, state=camera.state, reason=camera.last_error or camera.state,
                last_frame=camera.pipeline.last_frame,
                history=tuple((c.old, c.new, c.wall_ts, c.reason) for c in list(source.history)[-20:]))
            log.warning("camera %s without video since %s: filing fault case %s", camera.pipeline.camera.id,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.since_wall)), event.case_id)
            self._submit(self.filer.file_fault, camera.pipeline, fault)
        elif isinstance(event, Recovered):
            camera_id = camera.pipeline.camera.id
            at = datetime.fromtimestamp(event.back_wall, camera.pipeline.camera.tz)
            down_min = (event.back_wall - event.since_wall) / 60
            self.filer.add_note(CaseNote(
                note_id=f"{event.case_id}:recovered", case_id=event.case_id,
                at_wall=at.isoformat(timespec="milliseconds"), author="system", kind="camera_recovered",
                text=f"camera {camera_id} delivers video again after {down_min:.1f} min without"))

    def _take_newest(self) -> None:
        for camera in self.cameras:
            frame = camera.source.take()
            if frame is None:
                continue
            if not self._waiting:
                self._waiting_since = time.monotonic()
            elif camera in self._waiting:  # a newer frame came before the batch went: the older one is skipped
                camera.pipeline.stats.skipped += 1
            self._waiting[camera] = frame

    def _batch_due(self) -> bool:
        if not self._waiting:
            return False
        live = sum(1 for camera in self.cameras if camera.state == "live")
        full = len(self._waiting) >= min(self.max_batch, max(1, live))
        return full or time.monotonic() - self._waiting_since >= self.batch_deadline_s

    def _batch_wait_s(self) -> float:
        """How long the loop may sleep: until the flush deadline while frames wait, else a short tick."""
        if not self._waiting:
            return 0.2
        return max(0.0, self._waiting_since + self.batch_deadline_s - time.monotonic())

    def _analyse_waiting(self) -> None:
        waiting = list(self._waiting.items())
        self._waiting.clear()
        for start in range(0, len(waiting), self.max_batch):
            batch = waiting[start : start + self.max_batch]
            detect = [(camera, frame) for camera, frame in batch if camera.pipeline.needs_detection(frame)]
            found: dict[PatrolCamera, Detections] = {}
            if detect:
                started = time.perf_counter()
                detections = self.detector.detect([frame.image for _, frame in detect])
                share = (time.perf_counter() - started) / len(detect)
                for (camera, _), dets in zip(detect, detections, strict=True):
                    camera.pipeline.inference_s += share
                    found[camera] = dets
            self._after_analysis(self._track_and_apply_rules, batch, found)

    def _track_and_apply_rules(self, batch: list[tuple[PatrolCamera, Frame]],
                               found: dict[PatrolCamera, Detections]) -> None:
        for camera, frame in batch:
            for violation in camera.pipeline.analyse(frame, found.get(camera)):
                self._submit(self.filer.file, camera.pipeline, violation)
            camera.lag_s = time.time() - frame.wall_ts

    def _flush(self, cameras: list[PatrolCamera]) -> None:
        for camera in cameras:
            for violation in camera.pipeline.flush():
                self._submit(self.filer.file, camera.pipeline, violation)

    def _after_analysis(self, job: Callable, *args) -> None:
        """Runs ``job`` on the analysis thread after what is queued there; waits while two jobs are."""
        self._analysis_slots.acquire()
        future = self._analysis.submit(job, *args)
        future.add_done_callback(lambda _: self._analysis_slots.release())
        self._analysis_jobs.append(future)

    def _raise_analysis_errors(self) -> None:
        """A failure in tracking or rules stops the patrol, as it would on the loop's own thread."""
        while self._analysis_jobs and self._analysis_jobs[0].done():
            self._analysis_jobs.popleft().result()

    def _submit(self, job: Callable, *args) -> Future:
        self._writer_slots.acquire()
        future = self._writers.submit(job, *args)
        future.add_done_callback(self._release_slot)
        return future

    def _release_slot(self, future: Future) -> None:
        self._writer_slots.release()
        if future.exception() is not None:
            log.error("filing a case failed", exc_info=future.exception())
