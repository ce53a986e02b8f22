"""The promotion gate: is a candidate model at least as good as its parent on every real held-out set?

Both models are measured on the same held-out images, so the comparison is paired: a box set is
resampled image by image (the same draw for both models) and the candidate's mAP50 minus the
parent's is recomputed on each draw. The candidate has *lost* a set beyond noise when its mAP50 is
lower and the 95% interval of that difference lies wholly below zero. Event videos are judged on
their case counts, which are few and exact: fewer episodes matched, more duplicates or more false
positives is a loss; plate sets on fewer plates read exactly.

Synthetic sets (drawn scenes and the drawn sample street) are shown but never decide: a synthetic
score never stands in for a real one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np

from pipeline.train.evaluate import MeasuredSet, map50
from pipeline.train.report import SYNTHETIC_EVENT_SETS

DRAWS = 1000
SEED = 0
CONFIDENCE = 0.95
# the case counts an event video is judged on, and which way is better for each
EVENT_COUNTS = {"matched": +1, "duplicates": -1, "false_positives": -1}


class Verdict(StrEnum):
    LOST = "lost beyond noise"
    NOISE = "within noise"
    SAME = "no worse"
    BETTER = "better"
    UNMEASURED = "nothing labelled"


@dataclass(frozen=True)
class Evaluation:
    """What the gate compares of one model: its eval report (pipeline/train/report.py) and its box
    sets measured image by image."""

    report: dict
    held_out: dict[str, MeasuredSet]


@dataclass(frozen=True)
class SetJudgement:
    """One held-out set: the parent's and the candidate's figures, and what the difference means."""

    name: str
    measure: str  # "mAP50", "cases" or "plates read"
    real: bool
    parent: dict[str, float | int | None]
    candidate: dict[str, float | int | None]
    interval: tuple[float, float] | None  # of candidate - parent mAP50, from the paired bootstrap
    verdict: Verdict

    @property
    def refuses(self) -> bool:
        return self.real and self.verdict is Verdict.LOST

    def delta(self) -> dict[str, float | int | None]:
        return {key: None if value is None or self.parent[key] is None else round(value - self.parent[key], 4)
                for key, value in self.candidate.items()}


@dataclass(frozen=True)
class GateResult:
    parent: dict[str, str]  # name, sha256
    candidate: dict[str, str]
    sets: tuple[SetJudgement, ...]
    draws: int = DRAWS
    seed: int = SEED

    @property
    def accepted(self) -> bool:
        return not self.refused_by

    @property
    def refused_by(self) -> list[str]:
        return [judged.name for judged in self.sets if judged.refuses]

    def line(self) -> str:
        if self.accepted:
            return f"accepted: no real set lost beyond noise against {self.parent['name']}"
        return f"refused: {', '.join(self.refused_by)} lost beyond noise"

    def table(self) -> str:
        """Markdown: one row per set, then how to read it."""
        rows = ["| set | kind | measure | parent | candidate | Δ | 95% interval of Δ | verdict |",
                "|---|---|---|---|---|---|---|---|"]
        for judged in self.sets:
            interval = "—" if judged.interval is None else f"[{judged.interval[0]:+.4f}, {judged.interval[1]:+.4f}]"
            kind = "real" if judged.real else "synthetic: reported, never decides"
            rows.append(f"| {judged.name} | {kind} | {judged.measure} | {_figures(judged.parent)} | "
                        f"{_figures(judged.candidate)} | {_figures(judged.delta(), signed=True)} | {interval} | "
                        f"{'**' + judged.verdict + '**' if judged.refuses else judged.verdict} |")
        return "\n".join([
            f"Gate: candidate {self.candidate['name']} ({self.candidate['sha256'][:12]}…) against parent "
            f"{self.parent['name']} ({self.parent['sha256'][:12]}…): {self.line()}.", "", *rows, "",
            "Only real sets decide: synthetic scores never stand in for real ones. Box sets: paired bootstrap over "
            f"the same held-out images ({self.draws} draws, seed {self.seed}); a set is lost beyond noise when the "
            f"candidate's mAP50 is lower and the {CONFIDENCE:.0%} interval of candidate − parent lies wholly below "
            "zero. Event videos: lost on fewer episodes matched, more duplicates or more false positives. "
            "Plates: lost on fewer plates read exactly.", ""])

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "refused_by": self.refused_by, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> GateResult:
        sets = tuple(SetJudgement(**{**s, "verdict": Verdict(s["verdict"]),
                                     "interval": tuple(s["interval"]) if s["interval"] else None})
                     for s in data["sets"])
        return cls(data["parent"], data["candidate"], sets, data["draws"], data["seed"])


def judge(parent: Evaluation, candidate: Evaluation, *, synthetic_sets: frozenset[str] = frozenset(),
          draws: int = DRAWS, seed: int = SEED) -> GateResult:
    """The candidate against its parent on every set both were measured on; ``synthetic_sets`` names
    the box sets of drawn scenes. ValueError when they were not measured on the same sets and images."""
    for part in ("holdout", "events", "plates"):
        if set(parent.report[part]) != set(candidate.report[part]):
            raise ValueError(f"{part}: the parent was measured on {sorted(parent.report[part])}, "
                             f"the candidate on {sorted(candidate.report[part])}")
    if set(parent.held_out) != set(parent.report["holdout"]) or set(candidate.held_out) != set(parent.held_out):
        raise ValueError("the box sets measured image by image are not those of the reports")
    judged = [_judge_boxes(name, parent.held_out[name], candidate.held_out[name], real=name not in synthetic_sets,
                           draws=draws, seed=seed) for name in parent.report["holdout"]]
    judged += [_judge_counts(f"events {name}", "cases", result, candidate.report["events"][name], EVENT_COUNTS,
                             real=name not in SYNTHETIC_EVENT_SETS)
               for name, result in parent.report["events"].items()]
    judged += [_judge_counts(f"plates {name}", "plates read", result, candidate.report["plates"][name],
                             {"exact": +1}, real=True)
               for name, result in parent.report["plates"].items()]
    return GateResult(_model(parent.report), _model(candidate.report), tuple(judged), draws, seed)


def _judge_boxes(name: str, parent: MeasuredSet, candidate: MeasuredSet, *, real: bool, draws: int,
                 seed: int) -> SetJudgement:
    same_images = len(parent.images) == len(candidate.images) and all(
        np.array_equal(p.label_class, c.label_class) for p, c in zip(parent.images, candidate.images, strict=True))
    if not same_images or parent.classes != candidate.classes:
        raise ValueError(f"{name}: the two models were not measured on the same labelled images")
    before, after = parent.summary()["mAP50"], candidate.summary()["mAP50"]
    figures = {"parent": {"mAP50": before}, "candidate": {"mAP50": after}}
    if before is None:
        return SetJudgement(name, "mAP50", real, **figures, interval=None, verdict=Verdict.UNMEASURED)
    low, high = paired_interval(parent, candidate, draws=draws, seed=seed)
    if after < before and high < 0:
        verdict = Verdict.LOST
    elif low > 0:
        verdict = Verdict.BETTER
    else:
        verdict = Verdict.NOISE
    return SetJudgement(name, "mAP50", real, **figures, interval=(low, high), verdict=verdict)


def paired_interval(parent: MeasuredSet, candidate: MeasuredSet, *, draws: int = DRAWS,
                    seed: int = SEED) -> tuple[float, float]:
    """The central ``CONFIDENCE`` interval of candidate - parent mAP50 over ``draws`` resamples of
    the images with replacement, each draw the same images for both (draws with no labelled
    object measure nothing and are left out)."""
    rng = np.random.default_rng(seed)
    count = len(parent.images)
    differences = []
    for _ in range(draws):
        picked = rng.integers(0, count, count)
        before = map50([parent.images[i] for i in picked], parent.classes)
        after = map50([candidate.images[i] for i in picked], candidate.classes)
        if before is not None:
            differences.append(after - before)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def _judge_counts(name: str, measure: str, parent: dict, candidate: dict, better: dict[str, int], *,
                  real: bool) -> SetJudgement:
    """Counts that are exact, not samples: any step the wrong way is a loss."""
    steps = [(candidate[key] - parent[key]) * sign for key, sign in better.items()]
    verdict = Verdict.LOST if min(steps) < 0 else Verdict.BETTER if max(steps) > 0 else Verdict.SAME
    return SetJudgement(name, measure, real, {key: parent[key] for key in better},
                        {key: candidate[key] for key in better}, None, verdict)


def _model(report: dict) -> dict[str, str]:
    return {"name": report["model"]["name"], "sha256": report["model"]["sha256"]}


def _figures(figures: dict[str, float | int | None], *, signed: bool = False) -> str:
    def shown(value: float | int | None) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:+.4f}" if signed else f"{value:.4f}"
        return f"{value:+d}" if signed else str(value)

    if len(figures) == 1:
        return shown(next(iter(figures.values())))
    return ", ".join(f"{key.replace('_', ' ')} {shown(value)}" for key, value in figures.items())
