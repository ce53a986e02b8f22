"""Shadow runs: a candidate model watches the same frames of a camera beside the live one, and the
cases each would file are compared; only the live model's are filed.

Each frame is decoded once and analysed twice, by ``replay`` with the candidate as an analyser
beside the patrol's own: the live model's cases go through the usual filer (the same case ids as
a plain replay), the candidate's own tracker and rules only note the cases it would have filed,
under a namespace of their own, and nothing of them reaches the queue, the evidence or the spool.

A live case and a candidate's are taken for the same event as ``patrol eval`` takes a case for a
ground-truth episode (``pipeline.rules.same_event``): same kind and zone, confirmed within
``TOLERANCE_S`` of each other, boxes overlapping by IoU >= ``MIN_IOU``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector
from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.engine.replay import Analyser, ReplaySummary, replay
from pipeline.rules.same_event import MIN_IOU, TOLERANCE_S, boxes_overlap
from pipeline.types import Violation


@dataclass(frozen=True)
class ShadowCase:
    """What a comparison needs of a case, filed (live) or only noted (candidate)."""

    case_id: str
    kind: str
    zone_id: str
    confirmed_s: float
    bbox: tuple[float, float, float, float]
    score: float

    @classmethod
    def of_filed(cls, line: dict) -> ShadowCase:
        """From a cases.jsonl line."""
        return cls(line["case_id"], line["violation"], line["zone_id"], line["confirmed_s"], tuple(line["bbox"]),
                   line["score"])

    @classmethod
    def of_violation(cls, violation: Violation) -> ShadowCase:
        # rounded as cases.jsonl rounds the live ones, so the two sides read alike
        return cls(violation.case_id, violation.kind, violation.zone_id, round(violation.confirmed_s, 3),
                   tuple(round(float(v), 1) for v in violation.bbox), round(violation.score, 4))

    def same_event(self, other: ShadowCase) -> bool:
        return (self.kind == other.kind and self.zone_id == other.zone_id
                and abs(self.confirmed_s - other.confirmed_s) <= TOLERANCE_S
                and boxes_overlap(self.bbox, other.bbox))


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
    video: str
    camera_id: str
    live_model: dict
    candidate_model: dict
    frames_analysed: int  # by each model
    seconds: float  # of the whole run: decoding, both analyses, filing the live cases
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
           progress: bool = False, drain_timeout_s: float = 60.0) -> ShadowRun:
    """Replays ``video`` filing the ``live`` model's cases through ``cases`` (cases.jsonl at
    ``cases_path``, as ``replay`` does), while ``candidate`` analyses the same frames and only
    notes what it would file; writes the comparison as JSON to ``report_path``."""
    would_file: list[ShadowCase] = []  # the Violation itself would keep its frames alive to the end
    watcher = Analyser(CameraPipeline(camera, case_namespace=f"shadow:{Path(video).name}"), candidate,
                       lambda violation: would_file.append(ShadowCase.of_violation(violation)))
    summary = replay(video, camera, live, cases, cases_path=cases_path, evidence_root=evidence_root,
                     start_wall=start_wall, progress=progress, drain_timeout_s=drain_timeout_s, beside=[watcher])
    filed = [ShadowCase.of_filed(json.loads(line)) for line in cases_path.read_text(encoding="utf-8").splitlines()]
    both, live_only, candidate_only = pair_cases(filed, would_file)
    report = ShadowReport(Path(video).name, camera.id, live.model_record(), candidate.model_record(),
                          summary.frames_analysed, summary.seconds, both, live_only, candidate_only)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ShadowRun(summary, report)
