"""Event-level accuracy: replay a video with known violation episodes through the real patrol and
score the cases it files.

A case *fits* a ground-truth episode when it has the episode's kind and zone, it was confirmed
between (episode start + the rule's dwell - tolerance) and (episode end + tolerance), and, when the
episode has a box, the case's box overlaps it by IoU >= ``MIN_IOU``. Episodes shorter than the
dwell should file no case. Each long-enough episode takes the fitting case confirmed nearest to
start + dwell (a *match*); a further case fitting an already matched episode is a *duplicate*; a
case fitting none is a *false positive*.

precision = matches / cases filed (so duplicates count against it); recall = matches / episodes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.config import CameraConfig
from pipeline.rules.same_event import TOLERANCE_S, boxes_overlap

REPLAY_START_WALL = 1_795_500_000.0  # a fixed wall clock, so case ids are the same on every run


@dataclass(frozen=True)
class TruthEpisode:
    kind: str
    zone_id: str
    start_s: float
    end_s: float
    box: tuple[float, float, float, float] | None = None


def dwell_of(camera: CameraConfig) -> dict[tuple[str, str], float]:
    return {(zone.id, rule.type): rule.dwell_s for zone in camera.zones for rule in zone.rules}


def fits(case: dict, episode: TruthEpisode, dwell_s: float, tolerance_s: float = TOLERANCE_S) -> bool:
    if case["violation"] != episode.kind or case["zone_id"] != episode.zone_id:
        return False
    if not episode.start_s + dwell_s - tolerance_s <= case["confirmed_s"] <= episode.end_s + tolerance_s:
        return False
    return episode.box is None or boxes_overlap(case["bbox"], episode.box)


def score_cases(cases: list[dict], episodes: list[TruthEpisode], camera: CameraConfig,
                tolerance_s: float = TOLERANCE_S) -> dict:
    dwell = dwell_of(camera)
    expected = sorted((e for e in episodes if e.end_s - e.start_s >= dwell[(e.zone_id, e.kind)]),
                      key=lambda e: e.start_s + dwell[(e.zone_id, e.kind)])
    unmatched = list(cases)
    matched, missed = [], []
    for episode in expected:
        due_s = episode.start_s + dwell[(episode.zone_id, episode.kind)]
        fitting = [c for c in unmatched if fits(c, episode, dwell[(episode.zone_id, episode.kind)], tolerance_s)]
        if not fitting:
            missed.append(episode)
            continue
        case = min(fitting, key=lambda c: abs(c["confirmed_s"] - due_s))
        unmatched.remove(case)
        matched.append((episode, case, case["confirmed_s"] - due_s))
    duplicates = [c for c in unmatched
                  if any(fits(c, e, dwell[(e.zone_id, e.kind)], tolerance_s) for e, _, _ in matched)]
    false_positives = [c for c in unmatched if c not in duplicates]
    return {
        "episodes": len(expected),
        "cases": len(cases),
        "matched": len(matched),
        "missed": len(missed),
        "duplicates": len(duplicates),
        "false_positives": len(false_positives),
        "precision": round(len(matched) / len(cases), 4) if cases else None,
        "recall": round(len(matched) / len(expected), 4) if expected else None,
        "confirmation_delay_s": {  # how long after start + dwell the matched cases were filed
            "mean": round(float(np.mean([d for _, _, d in matched])), 2) if matched else None,
            "max": round(float(np.max([d for _, _, d in matched])), 2) if matched else None,
        },
        "missed_episodes": [asdict(e) for e in missed],
        "false_positive_cases": [_brief(c) for c in false_positives],
        "duplicate_cases": [_brief(c) for c in duplicates],
    }


def replay_cases(video: Path, camera: CameraConfig, model: Path, work: Path) -> tuple[list[dict], dict]:
    """The cases the real patrol (``pipeline.engine.replay``) files on ``video``, as cases.jsonl
    lines, and how much of the video it analysed."""
    from pipeline.config import Workspace
    from pipeline.detect import Detector
    from pipeline.engine import embedded_cases, replay

    shutil.rmtree(work, ignore_errors=True)  # a queue left from an earlier run would hold these case ids
    detector = Detector(model)
    workspace = Workspace(work)
    cases = embedded_cases(workspace, {"name": detector.card.name, "sha256": detector.card.sha256})
    try:
        summary = replay(str(video), camera, detector, cases, cases_path=work / "cases.jsonl",
                         evidence_root=workspace.evidence, start_wall=REPLAY_START_WALL, progress=True)
    finally:
        cases.filer.close(drain_timeout_s=30)
    analysed = {"frames_sampled": summary.frames_sampled, "frames_analysed": summary.frames_analysed,
                "frames_detected": summary.frames_analysed - summary.frames_gated, "seconds": round(summary.seconds, 1)}
    return [json.loads(line) for line in (work / "cases.jsonl").read_text().splitlines()], analysed


def sample_street_truth(gt_json: Path) -> list[TruthEpisode]:
    """The episodes of a video rendered by ``patrol synth`` (its ``.gt.json``)."""
    truth = json.loads(gt_json.read_text())
    return [TruthEpisode(e["kind"], e["zone_id"], e["start_s"], e["end_s"],
                         tuple(e["box"]) if e.get("box") else None) for e in truth["episodes"]]


def _brief(case: dict) -> dict:
    return {key: case[key] for key in ("case_id", "violation", "zone_id", "confirmed_s", "bbox")}
