"""Shadow runs: a candidate model watches the same frames of a camera beside the live one, and the
cases each would file are compared; only the live model's are filed.

Each frame is decoded once and analysed twice, by ``replay`` with the candidate as an analyser
beside the patrol's own: the live model's cases go through the usual filer (the same case ids as
a plain replay), the candidate's own tracker and rules only note the cases it would have filed,
under a namespace of their own, and nothing of them reaches the queue, the evidence or the spool.

A live case and a candidate's are taken for the same event as ``patrol eval`` takes a case for a
ground-truth episode (``pipeline.rules.same_event``): same kind and zone, confirmed within
``TOLERANCE_S`` of each other, boxes overlapping by IoU >= ``MIN_IOU``.

On live cameras (``patrol run --shadow-model``) the candidate is a ``LiveShadow`` beside the
patrol's own model: it runs on the same batches of frames, and each case it would file becomes a
line of its log, ``<var>/shadow/<candidate>.jsonl``; ``compare_live`` later pairs those with the
cases the patrol filed into the queue over the same spans.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime, tzinfo
from pathlib import Path

import av

from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector
from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.engine.live_camera import PatrolCamera
from pipeline.engine.replay import Analyser, ReplaySummary, replay
from pipeline.evidence.main_frame import scale_box
from pipeline.ingest import SubMainSource
from pipeline.queue.sqlite_queue import SqliteCaseQueue
from pipeline.rules.same_event import MIN_IOU, TOLERANCE_S, boxes_overlap
from pipeline.types import CaseRecord, Detections, Frame, Violation
from pipeline.vocabulary import ViolationKind


@dataclass(frozen=True)
class ShadowCase:
    """What a comparison needs of a case, filed (live) or only noted (candidate)."""

    case_id: str
    kind: str
    zone_id: str
    # on the clock both sides share: a video's, or on live cameras the wall clock (epoch seconds),
    # as a live camera's stream clock starts again with each patrol run
    confirmed_s: float
    bbox: tuple[float, float, float, float]
    score: float
    # A live case: the stream its pictures and box are from (``CaseRecord.evidence_stream``). A
    # candidate's on a live camera with a sub-stream: its box scaled to the main stream's pictures,
    # which a live case filed from the main stream is compared with.
    stream: str | None = None
    main_bbox: tuple[float, float, float, float] | None = None

    @classmethod
    def of_filed(cls, line: dict) -> ShadowCase:
        """From a cases.jsonl line."""
        return cls(line["case_id"], line["violation"], line["zone_id"], line["confirmed_s"], tuple(line["bbox"]),
                   line["score"])

    @classmethod
    def of_violation(cls, violation: Violation, filed_size: tuple[int, int] | None = None) -> ShadowCase:
        """``filed_size``: the size of the pictures the live cases are filed in when it is not the
        analysed frames' (a sub-stream analysed, the main stream filed): the box is scaled to it."""
        bbox = violation.bbox
        if filed_size is not None:
            width, height = violation.trigger_frame.size
            bbox = scale_box(bbox, (filed_size[0] / width, filed_size[1] / height))
        # rounded as cases.jsonl rounds the live ones, so the two sides read alike
        return cls(violation.case_id, violation.kind, violation.zone_id, round(violation.confirmed_s, 3),
                   tuple(round(float(v), 1) for v in bbox), round(violation.score, 4))

    @classmethod
    def of_record(cls, record: CaseRecord) -> ShadowCase:
        """A case the patrol filed, confirmed on the wall clock."""
        return cls(record.case_id, record.violation, record.zone_id, _seconds(record.confirmed_wall),
                   tuple(round(float(v), 1) for v in record.bbox), round(record.score, 4), record.evidence_stream)

    @classmethod
    def of_logged(cls, line: dict) -> ShadowCase:
        """A case ``LiveShadow`` logged, confirmed on the wall clock."""
        main_bbox = line.get("main_bbox")
        return cls(line["case_id"], line["kind"], line["zone_id"], _seconds(line["confirmed_wall"]),
                   tuple(line["bbox"]), line["score"], main_bbox=None if main_bbox is None else tuple(main_bbox))

    def same_event(self, other: ShadowCase) -> bool:
        """``other``, a candidate's case, is this live case's event."""
        theirs = other.main_bbox if self.stream == "main" and other.main_bbox is not None else other.bbox
        return (self.kind == other.kind and self.zone_id == other.zone_id
                and abs(self.confirmed_s - other.confirmed_s) <= TOLERANCE_S
                and boxes_overlap(self.bbox, theirs))


@dataclass(frozen=True)
class PairedCase:
    live: ShadowCase
    candidate: ShadowCase

    @property
    def delta_s(self) -> float:
        """How much later the candidate confirmed it (negative: sooner)."""
        return round(self.candidate.confirmed_s - self.live.confirmed_s, 3)


@dataclass(frozen=True)
class KindCounts:
    both: int
    live_only: int
    candidate_only: int


@dataclass(frozen=True)
class ShadowReport:
    video: str | None  # None: live cameras
    camera_id: str
    live_model: dict
    candidate_model: dict
    frames_analysed: int  # by each model
    seconds: float  # of the whole run: decoding, both analyses, filing the live cases (live: the spans watched)
    both: list[PairedCase]
    live_only: list[ShadowCase]
    candidate_only: list[ShadowCase]

    @property
    def analysed_fps(self) -> float:
        """Frames analysed by both models per second."""
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0

    def per_kind(self) -> dict[str, KindCounts]:
        both = Counter(pair.live.kind for pair in self.both)
        live_only = Counter(case.kind for case in self.live_only)
        candidate_only = Counter(case.kind for case in self.candidate_only)
        return {kind: KindCounts(both[kind], live_only[kind], candidate_only[kind])
                for kind in sorted(both | live_only | candidate_only)}

    def to_json(self) -> dict:
        return {
            "video": self.video, "camera_id": self.camera_id,
            "live_model": self.live_model, "candidate_model": self.candidate_model,
            "tolerance_s": TOLERANCE_S, "min_iou": MIN_IOU,
            "frames_analysed": self.frames_analysed, "seconds": round(self.seconds, 2),
            "analysed_fps": round(self.analysed_fps, 2),
            "counts": asdict(KindCounts(len(self.both), len(self.live_only), len(self.candidate_only))),
            "per_kind": {kind: asdict(counts) for kind, counts in self.per_kind().items()},
            "both": [{**asdict(pair), "delta_s": pair.delta_s} for pair in self.both],
            "live_only": [asdict(case) for case in self.live_only],
            "candidate_only": [asdict(case) for case in self.candidate_only],
        }

    def table(self) -> str:
        """Per kind: cases both models file, only the live one, only the candidate; and the mean
        confirmation-time delta of the pairs."""
        rows = [f"{'kind':<20} {'both':>5} {'live only':>10} {'candidate only':>15} {'mean delta':>11}"]
        for kind, counts in self.per_kind().items():
            deltas = [pair.delta_s for pair in self.both if pair.live.kind == kind]
            mean = f"{sum(deltas) / len(deltas):+.2f}s" if deltas else "-"
            rows.append(f"{kind:<20} {counts.both:>5} {counts.live_only:>10} {counts.candidate_only:>15} {mean:>11}")
        rows.append(f"{'total':<20} {len(self.both):>5} {len(self.live_only):>10} {len(self.candidate_only):>15}")
        head = (f"shadow: live {self.live_model.get('name')} vs candidate {self.candidate_model.get('name')}: "
                f"{self.frames_analysed} frames analysed by both in {self.seconds:.1f}s ({self.analysed_fps:.1f} fps)")
        return "\n".join([head, *rows])


@dataclass(frozen=True)
class ShadowRun:
    summary: ReplaySummary  # the live model's replay: what it filed
    report: ShadowReport


def pair_cases(live: list[ShadowCase], candidate: list[ShadowCase]
               ) -> tuple[list[PairedCase], list[ShadowCase], list[ShadowCase]]:
    """(pairs, live only, candidate only): each live case, in confirmation order, takes the
    unpaired candidate case of the same event confirmed nearest to it."""
    unpaired = sorted(candidate, key=lambda c: c.confirmed_s)
    pairs, live_only = [], []
    for case in sorted(live, key=lambda c: c.confirmed_s):
        same = [c for c in unpaired if case.same_event(c)]
        if not same:
            live_only.append(case)
            continue
        nearest = min(same, key=lambda c: abs(c.confirmed_s - case.confirmed_s))
        unpaired.remove(nearest)
        pairs.append(PairedCase(case, nearest))
    return pairs, live_only, unpaired


def shadow(video: str, camera: CameraConfig, live: FrameDetector, candidate: FrameDetector, cases: CaseMaker, *,
           cases_path: Path, report_path: Path, evidence_root: Path | None, start_wall: float,
           progress: bool = False, drain_timeout_s: float = 60.0, detect_video: str | None = None) -> ShadowRun:
    """Replays ``video`` filing the ``live`` model's cases through ``cases`` (cases.jsonl at
    ``cases_path``, as ``replay`` does), while ``candidate`` analyses the same frames and only
    notes what it would file; writes the comparison as JSON to ``report_path``. ``detect_video``:
    the sub-stream both models analyse, ``video`` then only recorded (see ``replay``)."""
    would_file: list[ShadowCase] = []  # the Violation itself would keep its frames alive to the end
    filed_size = None if detect_video is None else _picture_size(video)  # the live cases' boxes are the main stream's
    watcher = Analyser(CameraPipeline(camera, case_namespace=f"shadow:{Path(video).name}"), candidate,
                       lambda violation: would_file.append(ShadowCase.of_violation(violation, filed_size)))
    summary = replay(video, camera, live, cases, cases_path=cases_path, evidence_root=evidence_root,
                     start_wall=start_wall, progress=progress, drain_timeout_s=drain_timeout_s, beside=[watcher],
                     detect_video=detect_video)
    filed = [ShadowCase.of_filed(json.loads(line)) for line in cases_path.read_text(encoding="utf-8").splitlines()]
    both, live_only, candidate_only = pair_cases(filed, would_file)
    report = ShadowReport(Path(video).name, camera.id, live.model_record(), candidate.model_record(),
                          summary.frames_analysed, summary.seconds, both, live_only, candidate_only)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ShadowRun(summary, report)


def _picture_size(video: str) -> tuple[int, int]:
    with av.open(video) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


ShadowBatch = list[tuple[CameraPipeline, Frame, Detections | None, tuple[int, int] | None]]
"""A batch's frames, each with the candidate's pipeline of its camera, the candidate's detections
(None: its motion gate spared the network) and, of a camera with a sub-stream, the size of its
main stream's pictures (None: one stream, or not declared)."""


class LiveShadow:
    """A candidate model beside a live patrol: it runs on the batches of frames the live model
    runs on (the live pipelines' adaptive rate picks them for both), each camera through a
    ``CameraPipeline`` of its own (namespace ``shadow:<camera id>``), and appends each case it would
    file to ``log_path`` as a JSON line; nothing of it reaches the queue, the evidence or the spool.

    The log also marks when the candidate began and stopped watching each camera (the first and
    the last frame it analysed), so a comparison takes the live cases of those spans only. A
    camera's pipeline is made on its first frame and dropped when the camera leaves the patrol;
    keyed by the patrol's camera, not its id, a camera removed and added again starts afresh, as
    its live pipeline does (which, unlike this one, takes back its saved episodes).
    """

    def __init__(self, candidate: FrameDetector, live_model: dict, log_path: Path) -> None:
        self.candidate = candidate
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._models = {"live_model": live_model, "candidate_model": candidate.model_record()}
        # made on the inference loop; dropped on the analysis thread once their camera is out of the batches
        self._pipelines: dict[PatrolCamera, CameraPipeline] = {}
        self._log_lock = threading.Lock()  # lines come from both threads

    @staticmethod
    def log_path_in(var: Path, candidate: str) -> Path:
        return var / "shadow" / f"{candidate}.jsonl"

    def detect(self, batch: list[tuple[PatrolCamera, Frame]]) -> ShadowBatch:
        """The candidate's run on those frames of a batch its own motion gates let through; on the
        inference loop, after the live model's run."""
        pipelines = [self._pipeline(camera, frame) for camera, frame in batch]
        frames = [frame for _, frame in batch]
        needed = [i for i, (pipeline, frame) in enumerate(zip(pipelines, frames)) if pipeline.needs_detection(frame)]
        detections: list[Detections | None] = [None] * len(batch)
        if needed:
            for i, found in zip(needed, self.candidate.detect([frames[i].image for i in needed]), strict=True):
                detections[i] = found
        main_sizes = [camera.source.dual.main.picture_size if isinstance(camera.source, SubMainSource) else None
                      for camera, _ in batch]
        return list(zip(pipelines, frames, detections, main_sizes))

    def step(self, batch: ShadowBatch) -> None:
        """Tracking and rules of a batch's frames; on the analysis thread, after the live model's."""
        for pipeline, frame, detections, main_size in batch:
            self._note(pipeline, pipeline.step(frame, detections), main_size)

    def flush(self, cameras: list[PatrolCamera], *, leaving: bool = False) -> None:
        """Logs where the candidate stopped watching the cameras ``leaving`` the patrol, and drops
        their pipelines. Their cases were noted at confirmation: none waits for a post-roll."""
        if not leaving:
            return
        for camera in cameras:
            pipeline = self._pipelines.pop(camera, None)
            if pipeline is not None and pipeline.last_frame is not None:
                self._log(pipeline, watched_until=_wall(pipeline.last_frame.wall_ts, pipeline.camera.tz),
                          frames_analysed=pipeline.stats.analysed)

    def _pipeline(self, camera: PatrolCamera, frame: Frame) -> CameraPipeline:
        pipeline = self._pipelines.get(camera)
        if pipeline is None:
            pipeline = CameraPipeline(camera.pipeline.camera, case_namespace=f"shadow:{camera.camera_id}",
                                      wall_clock_ids=True)
            self._pipelines[camera] = pipeline
            self._log(pipeline, watching_since=_wall(frame.wall_ts, pipeline.camera.tz), **self._models)
        return pipeline

    def _note(self, pipeline: CameraPipeline, violations: list[Violation], main_size: tuple[int, int] | None) -> None:
        for violation in violations:
            case = ShadowCase.of_violation(violation)
            if main_size is not None:
                case = replace(case, main_bbox=ShadowCase.of_violation(violation, main_size).bbox)
            confirmed_wall = _wall(violation.trigger_frame.wall_ts, pipeline.camera.tz)
            self._log(pipeline, **asdict(case), confirmed_wall=confirmed_wall)

    def _log(self, pipeline: CameraPipeline, **fields) -> None:
        line = json.dumps({"camera_id": pipeline.camera.id, **fields}, ensure_ascii=False)
        with self._log_lock, self.log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


@dataclass(frozen=True)
class Watch:
    """A span in which the candidate watched a camera, from the first frame it analysed to the last."""

    camera_id: str
    since: float  # epoch seconds
    until: float | None  # None: the log ends before it does (the patrol still runs)
    frames_analysed: int | None  # None: not logged (the patrol died, or still runs)
    live_model: dict
    candidate_model: dict


@dataclass(frozen=True)
class ShadowLog:
    """What a ``LiveShadow`` logged: its watches and, per camera, the cases it would have filed."""

    watches: list[Watch]
    would_file: dict[str, list[ShadowCase]]

    @classmethod
    def read(cls, path: Path) -> ShadowLog:
        watches: list[Watch] = []
        watching: dict[str, Watch] = {}
        would_file: dict[str, list[ShadowCase]] = defaultdict(list)
        for text in path.read_text(encoding="utf-8").splitlines():
            line = json.loads(text)
            camera_id = line["camera_id"]
            if "watching_since" in line:
                since = _seconds(line["watching_since"])
                if (died := watching.pop(camera_id, None)) is not None:  # its patrol ended without a word
                    watches.append(replace(died, until=since))
                watching[camera_id] = Watch(camera_id, since, None, None, line["live_model"], line["candidate_model"])
            elif "watched_until" in line:
                watches.append(replace(watching.pop(camera_id), until=_seconds(line["watched_until"]),
                                       frames_analysed=line["frames_analysed"]))
            else:
                would_file[camera_id].append(ShadowCase.of_logged(line))
        return cls([*watches, *watching.values()], dict(would_file))


@dataclass(frozen=True)
class LiveShadowReport:
    """A live shadow run compared: per camera, and over all of them."""

    candidate: str
    since: float | None
    until: float | None
    cameras: dict[str, ShadowReport]
    total: ShadowReport

    def to_json(self) -> dict:
        return {"candidate": self.candidate, "since": self.since, "until": self.until,
                "cameras": {camera_id: report.to_json() for camera_id, report in self.cameras.items()},
                "total": self.total.to_json()}

    def table(self) -> str:
        return "\n\n".join([*(f"camera {camera_id}\n{report.table()}" for camera_id, report in self.cameras.items()),
                             f"all cameras\n{self.total.table()}"])


def compare_live(candidate: str, log: ShadowLog, queue: SqliteCaseQueue, *, since: float | None = None,
                 until: float | None = None, now: float) -> LiveShadowReport:
    """Pairs, per camera, the cases the patrol filed into ``queue`` with those the candidate would
    have filed, over the spans it watched the camera between ``since`` and ``until`` (epoch
    seconds; None: unbounded). Frames and seconds are those of the watches that logged their end."""
    window = (-math.inf if since is None else since, math.inf if until is None else until)
    reports: dict[str, ShadowReport] = {}
    compared: list[Watch] = []
    for camera_id in sorted({watch.camera_id for watch in log.watches}):
        watches = [w for w in log.watches if w.camera_id == camera_id and _within(w, window, now) is not None]
        if not watches:
            continue
        spans = [_within(w, window, now) for w in watches]
        live = [ShadowCase.of_record(record) for start, stop in spans
                for record in queue.confirmed_between(camera_id, start, stop)
                if record.violation != ViolationKind.CAMERA_FAULT]  # filed by the patrol, not by a model
        would_file = [case for case in log.would_file.get(camera_id, [])
                      if any(start <= case.confirmed_s <= stop for start, stop in spans)]
        compared += watches
        ended = [w for w in watches if w.frames_analysed is not None]
        reports[camera_id] = ShadowReport(None, camera_id, watches[-1].live_model, watches[-1].candidate_model,
                                          sum(w.frames_analysed for w in ended), _covered_s(ended),
                                          *pair_cases(live, would_file))
    named = compared or log.watches  # a window the candidate never watched still names the models
    models = (named[-1].live_model, named[-1].candidate_model) if named else ({}, {})
    each = list(reports.values())
    total = ShadowReport(None, ", ".join(reports), *models, sum(r.frames_analysed for r in each),
                         _covered_s([w for w in compared if w.frames_analysed is not None]),
                         [pair for r in each for pair in r.both], [case for r in each for case in r.live_only],
                         [case for r in each for case in r.candidate_only])
    return LiveShadowReport(candidate, since, until, reports, total)


def _within(watch: Watch, window: tuple[float, float], now: float) -> tuple[float, float] | None:
    """The part of the watch inside the window; None: none."""
    start, stop = max(watch.since, window[0]), min(now if watch.until is None else watch.until, window[1])
    return (start, stop) if start <= stop else None


def _covered_s(watches: list[Watch]) -> float:
    """How long at least one of the (ended) watches lasted."""
    covered, reached = 0.0, -math.inf
    for start, stop in sorted((w.since, w.until) for w in watches):
        covered += max(0.0, stop - max(start, reached))
        reached = max(reached, stop)
    return covered


def _wall(ts: float, tz: tzinfo) -> str:
    """As a case's ``confirmed_wall``: ISO 8601 in the camera's time zone, to the millisecond."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="milliseconds")


def _seconds(wall: str) -> float:
    return datetime.fromisoformat(wall).timestamp()
