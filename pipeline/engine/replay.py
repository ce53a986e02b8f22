"""Replay: the patrol over a video file with no pacing, one camera as fast as the machine allows.

Three stages on their own threads, each a few frames ahead of the next: decoding, the network,
and the rest (``CameraPipeline.step``: tracking, rules, post-roll; then filing), in frame order.
Further analysers may watch the same decoded frames beside the filed one (a shadow run's candidate).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm import tqdm

from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector
from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.ingest import DualRing, Recorder, decode
from pipeline.types import CaseRecord, Detections, Frame, Violation


@dataclass
class ReplaySummary:
    frames_decoded: int
    frames_analysed: int
    seconds: float
    cases: int  # cases that reached the queue (or were found there already)
    spooled: int = 0  # cases still on local disk, waiting for a backend
    outages: int = 0  # times a backend became unreachable during the run
    frames_gated: int = 0  # analysed frames on which motion gating spared the network
    frames_passed_over: int = 0  # sampled frames the adaptive rate left unanalysed while every zone was still
    spool: str = ""  # the spool folder
    rejected: int = 0  # undeliverable cases set aside in the spool's rejected folder
    unwritten: int = 0  # cases the spool could not take before the end (its disk full): not filed
    spool_error: str | None = None  # why it could not

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_sampled(self) -> int:
        """Frames taken at the camera's analysis_fps: analysed, or passed over by the adaptive rate."""
        return self.frames_analysed + self.frames_passed_over

    def line(self) -> str:
        line = (f"replay: {self.frames_decoded} frames decoded, {self.frames_analysed} analysed in "
                f"{self.seconds:.1f}s ({self.analysed_fps:.1f} analysed fps), {self.cases} cases")
        if self.frames_passed_over:
            line += (f"; the zones were still: {self.frames_passed_over} of {self.frames_sampled} sampled frames "
                     "passed over")
        if self.frames_gated:
            line += f"; motion gating spared the network {self.frames_gated} frames"
        if self.outages:
            line += f"; backends were unreachable {self.outages} time(s), the spool held the cases meanwhile"
        if self.spooled:
            line += f"; {self.spooled} case(s) still wait in the spool for a backend"
        if self.rejected:
            line += f"; {self.rejected} undeliverable case(s) set aside in {self.spool}/rejected"
        return line

    def failure(self) -> str | None:
        """Why some cases were not filed, for an error line and a failed exit; None when all were."""
        if not self.unwritten:
            return None
        why = self.spool_error or f"cannot write to {self.spool}"
        return f"{why}: {self.unwritten} case(s) not written"


@dataclass(frozen=True)
class Planned:
    """What becomes of one frame in one analyser."""

    analysed: bool  # False: the adaptive rate passed it over
    inference: Future[list[Detections]] | None = None  # None on an analysed frame: motion gating spared the network


def _ignore(_case_id: str, *, post_roll_seen: bool) -> None:
    pass


@dataclass(frozen=True)
class Analyser:
    """One model's analysis of the replayed frames: its own camera state (tracker, rules,
    post-roll), its detector, what becomes of each violation it confirms and, once its clip's
    post-roll has been seen (or the video ended first), of its case."""

    pipeline: CameraPipeline
    detector: FrameDetector
    on_violation: Callable[[Violation], None]
    on_clip_recorded: Callable[..., None] = _ignore  # (case id, *, post_roll_seen)

    def plan(self, frame: Frame, network: Executor) -> Planned:
        """Whether the frame is analysed and, when the network runs on it, its detections on their way."""
        if not self.pipeline.analyses(frame):
            return Planned(analysed=False)
        if not self.pipeline.needs_detection(frame):
            return Planned(analysed=True)
        return Planned(analysed=True, inference=network.submit(self.detector.detect, [frame.image]))

    def step(self, frame: Frame, planned: Planned) -> None:
        if not planned.analysed:
            return
        detections = None if planned.inference is None else planned.inference.result()[0]
        for violation in self.pipeline.step(frame, detections):
            self.on_violation(violation)
        for case_id in self.pipeline.clips_recorded():
            self.on_clip_recorded(case_id, post_roll_seen=True)

    def flush(self) -> None:
        for case_id in self.pipeline.flush():
            self.on_clip_recorded(case_id, post_roll_seen=False)


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


def replay(video: str, camera: CameraConfig, detector: FrameDetector, cases: CaseMaker, *, cases_path: Path,
           evidence_root: Path | None, start_wall: float, progress: bool = False,
           drain_timeout_s: float = 60.0, beside: Sequence[Analyser] = (),
           detect_video: str | None = None) -> ReplaySummary:
    """Runs the patrol over a file with no pacing; appends one JSON line per case to ``cases_path``
    as each reaches the queue, and waits up to ``drain_timeout_s`` at the end for the spool (and,
    on a full disk, for room on it: the summary counts the cases still held).

    Decoding, the detector (``detector.parallel_runs`` frames at once) and the rest (tracking,
    rules, filing, in frame order) run on their own threads, so on a multi-core machine the
    network never waits for the others. Each analyser ``beside`` analyses every decoded frame
    too, after the patrol's own; what it confirms goes to its ``on_violation``, never to ``cases``.

    ``detect_video``: the same scene's sub-stream, as a camera's ``detect_url``: it is the file
    analysed, while ``video`` (the main stream) is only demuxed beside it, a few seconds ahead, for
    the cases' pictures and clips."""
    pipeline = CameraPipeline(camera, case_namespace=f"replay:{Path(video).name}")
    recorder, ring = None, pipeline.ring
    if detect_video is not None:
        pipeline.ring = dual = DualRing(ring.seconds, arrival=False)
        recorder = Recorder(video, dual.main, camera_id=camera.id, follow=lambda: dual.sub.newest_s or 0.0)
        video, ring = detect_video, dual.sub
    analysers = [Analyser(pipeline, detector, partial(cases.file, pipeline), partial(cases.complete, pipeline)),
                 *beside]
    filer = cases.filer
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

        def analyse(frame: Frame, plans: list[Planned]) -> None:
            for analyser, planned in zip(analysers, plans, strict=True):
                analyser.step(frame, planned)
            bar.update(1)

        filer.listeners.append(record_case)
        filer.start()
        if recorder is not None:
            recorder.start()
        frames = Prefetch(decode(video, camera_id=camera.id, analysis_fps=camera.analysis_fps, ring=ring,
                                 stats=pipeline.stats, start_wall=start_wall),
                          depth=PREFETCH_FRAMES, name=f"decode-{camera.id}")
        # a stand-in for a detector (tests) is called one frame at a time, in frame order
        runs = min(a.detector.parallel_runs if isinstance(a.detector, FrameDetector) else 1 for a in analysers)
        network = ThreadPoolExecutor(max_workers=runs, thread_name_prefix=f"detect-{camera.id}")
        analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"analysis-{camera.id}")
        backlog = threading.BoundedSemaphore(runs + ANALYSIS_BACKLOG)
        jobs: deque[Future] = deque()
        try:
            for frame in frames:
                while jobs and jobs[0].done():
                    jobs.popleft().result()  # an analysis that failed stops the replay here
                backlog.acquire()
                plans = [analyser.plan(frame, network) for analyser in analysers]
                jobs.append(analysis.submit(analyse, frame, plans))
                jobs[-1].add_done_callback(lambda _: backlog.release())
            for job in jobs:
                job.result()
        finally:  # a video that breaks off still files what it confirmed before the break
            frames.close()
            if recorder is not None:
                recorder.release()  # the main stream's post-roll: no longer held back by the analysed file
            network.shutdown(wait=True)
            analysis.shutdown(wait=True)
            for analyser in analysers:
                analyser.flush()
            if recorder is not None:
                recorder.close()
            delivered = filer.wait_delivered(drain_timeout_s)
            filer.listeners.remove(record_case)
    spooled = 0 if delivered else len(filer.spool.entries())
    return ReplaySummary(pipeline.stats.received, pipeline.stats.analysed, time.perf_counter() - started, filed,
                         spooled, filer.drainer.outages, pipeline.gated, pipeline.passed_over,
                         spool=str(filer.spool.root), rejected=filer.drainer.rejected, unwritten=filer.held,
                         spool_error=filer.spool_error)


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


def case_line(record: CaseRecord, is_new: bool) -> str:
    again = "" if is_new else " (already filed)"
    return (f"[case] {record.case_id} {record.violation} {record.event_name} camera={record.camera_id} "
            f"zone={record.zone_id} t={record.confirmed_s:.1f}s dwell={record.dwell_s:.1f}s "
            f"score={record.score:.2f}{again}")
