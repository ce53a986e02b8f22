"""Replay throughput of the whole patrol (decode, detect, track, rules, evidence) on this machine.

    .venv/bin/python benchmarks/replay_fps.py            # prints a table, writes benchmarks/results/replay.json

Runs the same code as `patrol replay` on the shipped sample street with the default model, and on the real
parking-lot video in ../shared with YOLOX-nano (and the project model), as fast as the machine allows.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pipeline
from pipeline.cli.runner import CaseFiler, ReplaySummary, replay
from pipeline.config import load_camera
from pipeline.detect import Detector
from pipeline.evidence import EvidenceWriter, LocalEvidenceStore, load_event_codes
from pipeline.queue import SqliteCaseQueue

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

RUNS = [
    ("sample-street (synthetic 960x540, 150 s)", REPO / "streams/samples/sample-street.mp4",
     REPO / "streams/sample-street.yaml", REPO / "models/patrol-street.onnx"),
    ("car-detection (real 768x432, 30 s)", SHARED / "videos/car-detection.mp4",
     REPO / "tests/data/car-lot.yaml", SHARED / "models/yolox_nano.onnx"),
    ("car-detection (real 768x432, 30 s)", SHARED / "videos/car-detection.mp4",
     REPO / "tests/data/car-lot.yaml", REPO / "models/patrol-street.onnx"),
]


def replay_once(video: Path, camera_file: Path, model: Path) -> ReplaySummary:
    camera = load_camera(camera_file)
    with tempfile.TemporaryDirectory() as out:
        store = LocalEvidenceStore(Path(out) / "evidence")
        detector = Detector(model)
        writer = EvidenceWriter(store, load_event_codes(), pipeline.__version__)
        with SqliteCaseQueue(Path(out) / "cases.sqlite3") as queue:
            filer = CaseFiler(writer, queue, {"name": detector.card.name, "sha256": detector.card.sha256})
            return replay(str(video), camera, detector, filer, cases_path=Path(out) / "cases.jsonl",
                          evidence_root=store.root, start_wall=time.time())


def main() -> int:
    results = []
    for name, video, camera, model in RUNS:
        summary = replay_once(video, camera, model)
        results.append({"video": name, "model": model.name, "frames_decoded": summary.frames_decoded,
                        "frames_analysed": summary.frames_analysed, "seconds": round(summary.seconds, 2),
                        "analysed_fps": round(summary.analysed_fps, 1),
                        "decoded_fps": round(summary.frames_decoded / summary.seconds, 1), "cases": summary.cases})
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    out = REPO / "benchmarks" / "results" / "replay.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "runs": results}, indent=2) + "\n")
    print(f"{'video':42} {'model':22} {'decoded':>8} {'analysed':>8} {'an.fps':>7} {'cases':>5}")
    for r in results:
        print(f"{r['video']:42} {r['model']:22} {r['frames_decoded']:8} {r['frames_analysed']:8} "
              f"{r['analysed_fps']:7.1f} {r['cases']:5}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
