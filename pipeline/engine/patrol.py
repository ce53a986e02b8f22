"""The live patrol: scheduling only. A decode thread per camera (PyAV releases the GIL while
decoding) keeps only the newest analysis frame; one inference loop batches the cameras' newest
frames through the detector (waiting a short flush deadline for the other cameras' frames); one
analysis thread runs each camera's ``CameraPipeline.step``; a small pool renders and files
evidence off the hot path. Cameras come and go while it runs (a fleet worker's leases).

Fault policy (``faults``), episode keeping (``episodes``) and health (``health``) live in modules
of their own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector
from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.engine.episodes import EpisodeKeeper
from pipeline.engine.faults import MAIN_STREAM, FaultWatch, spool_faults
from pipeline.engine.health import PatrolReport, health_line, spool_line
from pipeline.engine.live_camera import CameraEvents, PatrolCamera
from pipeline.engine.shadow import LiveShadow, ShadowBatch
from pipeline.ingest import DualRing, LiveSource, SubMainSource
from pipeline.ingest.source import is_live_url
from pipeline.rules.memory import EpisodeMemory
from pipeline.types import CaseNote, Detections, Frame
from pipeline.vocabulary import CameraState

log = logging.getLogger(__name__)


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

    def __init__(self, cameras: list[CameraConfig], detector: FrameDetector, cases: CaseMaker, *, loop_files: bool,
                 health_every_s: float = 5.0, print_line: Callable[[str], None] = print,
                 max_batch: int | None = None, batch_deadline_s: float = 0.1,
                 memory: EpisodeMemory | None = None, until_stopped: bool = False,
                 shadow: LiveShadow | None = None) -> None:
        self.detector = detector
        self.cases = cases
        self.filer = cases.filer
        self.health_every_s = health_every_s
        self.print_line = print_line
        self._max_batch = max_batch
        self.batch_deadline_s = batch_deadline_s
        self.episodes = EpisodeKeeper(memory, every_s=self.SAVE_EPISODES_EVERY_S) if memory is not None else None
        self.until_stopped = until_stopped
        self.shadow = shadow  # a candidate model on the same batches, filing nothing (patrol run --shadow-model)
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
        # Each confirmed case's filing, until its clip's completion (which must follow it) is handed out.
        self._filing: dict[str, Future] = {}
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
        live = is_live_url(camera.analysed_url)
        pipeline = CameraPipeline(camera, case_namespace=f"live:{camera.id}", wall_clock_ids=True)
        if live and self.episodes is not None:  # a file starts again from its beginning: nothing carries over
            self.episodes.restore(pipeline)
        events = CameraEvents()
        stop = threading.Event()
        if camera.detect_url is None:
            source = LiveSource(camera, pipeline.ring, pipeline.stats, loop_files=self._loop_files, wake=self._wake,
                                stop=stop, on_state=events.record)
        else:  # the sub-stream analysed, the main stream recorded: the clip and pictures come from its ring
            pipeline.ring = DualRing(pipeline.ring.seconds, arrival=live)
            source = SubMainSource(camera, pipeline.ring, pipeline.stats, loop_files=self._loop_files,
                                   wake=self._wake, stop=stop, on_state=events.record)
        threshold_s = camera.ingest.offline_fault_after_s
        watch = FaultWatch(camera.id, threshold_s, time.time()) if live else None
        main_watch = (FaultWatch(camera.id, threshold_s, time.time(), cause=MAIN_STREAM)
                      if live and camera.detect_url is not None else None)
        return PatrolCamera(pipeline, source, events, watch, stop, main_faults=main_watch)

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
            for future in self._flush([camera], leaving=True):
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
            spool_entries=len(self.filer.spool.deliverable()),  # a clip still recorded waits for no backend
            backend_error=drainer.backend_error,
            spool_path=str(self.filer.spool.root),
            spool_rejected=drainer.rejected,
            spool_held=self.filer.held,
            spool_error=self.filer.spool_error,
            disk_full=self.filer.disk_full,
        )

    def run(self, duration_s: float | None = None) -> None:
        self.filer.start()
        for camera in self.cameras:
            camera.source.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_health = time.monotonic() + self.health_every_s
        try:
            while not self._stop.is_set() and not self._stop_asked:
                self.loop_tick = time.monotonic()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._apply_changes()
                if self.episodes is not None and self.episodes.due():
                    self._after_analysis(self._save_episodes, self.cameras)
                for camera in self.cameras:
                    camera.rates.sample(camera.counters())
                    self._watch_faults(camera)
                self._file_spool_faults()
                if time.monotonic() >= next_health:
                    self._print_health()
                    next_health += self.health_every_s
                self._wake.wait(self._batch_wait_s())
                self._wake.clear()
                self._take_newest()
                if self._batch_due():
                    self._analyse_waiting()
                ended = [camera for camera in self.cameras
                         if camera.state not in (CameraState.LIVE, CameraState.STALLED)]
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
            self._flush(self.cameras, leaving=True)
            self._save_episodes(self.cameras, wait=True)
            self._file_spool_faults()
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
        if self.episodes is None:
            return
        snapshots = self.episodes.snapshot([c.pipeline for c in cameras if c.faults is not None])
        if not snapshots:
            return
        if wait:
            self.episodes.store(snapshots)
        else:
            self._submit(self.episodes.store, snapshots)

    def _print_health(self) -> None:
        report = self.report()
        for camera in report.cameras:
            self.print_line(health_line(camera))
        if (line := spool_line(report)) is not None:
            self.print_line(line)

    def _watch_faults(self, camera: PatrolCamera) -> None:
        for found, what in ((camera.check_faults(time.time()), "without video"),
                            (camera.check_main_stream(time.time()),
                             "its main stream recorded nothing, evidence from the sub-stream")):
            if isinstance(found, tuple):
                fault, note = found
                log.warning("camera %s %s since %s: filing fault case %s", camera.camera_id, what,
                            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fault.since_wall)), fault.case_id)
                self._submit(self.cases.file_fault_with_note, camera.pipeline.info, fault, note)
            elif isinstance(found, CaseNote):
                self.filer.add_note(found)

    def _file_spool_faults(self) -> None:
        """Once the cases held in memory while the spool took none (its disk full) are all written: a
        fault case for each camera whose cases waited, saying why they reach review late."""
        for outage in self.filer.outages_over():
            found = spool_faults(outage)
            log.warning("spool %s takes cases again after %.1f min (%s): filing %d fault case(s)", outage.path,
                        (outage.until_wall - outage.since_wall) / 60, outage.reason, len(found))
            for camera, fault, note in found:
                self._submit(self.cases.file_fault_with_note, camera, fault, note)

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
        live = sum(1 for camera in self.cameras if camera.state == CameraState.LIVE)
        full = len(self._waiting) >= min(self.max_batch, max(1, live))
        return full or time.monotonic() - self._waiting_since >= self.batch_deadline_s

    def _batch_wait_s(self) -> float:
        """How long the loop may sleep: until the flush deadline while frames wait, else a short tick."""
        if not self._waiting:
            return 0.2
        return max(0.0, self._waiting_since + self.batch_deadline_s - time.monotonic())

    def _analyse_waiting(self) -> None:
        waiting = [(camera, frame) for camera, frame in self._waiting.items() if camera.pipeline.analyses(frame)]
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
            shadow = self.shadow.detect(batch) if self.shadow is not None else None
            self._after_analysis(self._track_and_apply_rules, batch, found, shadow)

    def _track_and_apply_rules(self, batch: list[tuple[PatrolCamera, Frame]], found: dict[PatrolCamera, Detections],
                               shadow: ShadowBatch | None) -> None:
        for camera, frame in batch:
            pipeline = camera.pipeline
            for violation in pipeline.step(frame, found.get(camera)):
                self._filing[violation.case_id] = self._submit(self.cases.file, pipeline, violation)
            for case_id in pipeline.clips_recorded():
                self._submit(self._complete, pipeline, case_id, self._filing.pop(case_id, None), True)
            camera.lag_s = time.time() - frame.wall_ts
        if shadow is not None:
            self.shadow.step(shadow)

    def _flush(self, cameras: list[PatrolCamera], *, leaving: bool = False) -> list[Future]:
        """Completes the clips the cameras still record a post-roll for with what there is: their
        stream ended, or they are ``leaving`` the patrol. Returns the futures of that."""
        if self.shadow is not None:
            self.shadow.flush(cameras, leaving=leaving)
        return [self._submit(self._complete, camera.pipeline, case_id, self._filing.pop(case_id, None), False)
                for camera in cameras for case_id in camera.pipeline.flush()]

    def _complete(self, pipeline: CameraPipeline, case_id: str, filing: Future | None, post_roll_seen: bool) -> None:
        if filing is not None:
            wait([filing])  # on the other writer: it came first, so it runs or ran (its error is logged there)
        self.cases.complete(pipeline, case_id, post_roll_seen=post_roll_seen)

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
