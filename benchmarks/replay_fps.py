"""Replay throughput of the whole patrol (decode, detect, track, rules, evidence) on this machine.

    .venv/bin/python benchmarks/replay_fps.py            # prints a table, writes benchmarks/results/replay.json

Runs `patrol replay` on the shipped sample street with the default model, and on the real
parking-lot video in ../shared with YOLOX-nano (and the project model), as fast as the machine allows.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    results = []
    for name, video, camera, model in RUNS:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "replay", str(video), "--camera",
                                   str(camera), "--model", str(model), "--out", out],
                                  capture_output=True, text=True, cwd=REPO, check=True)
            wall = time.perf_counter() - started
        summary = next(line for line in done.stdout.splitlines() if line.startswith("replay:"))
        words = summary.split()
        decoded, analysed, cases = int(words[1]), int(words[5]), int(words[-2])
        seconds = float(words[8].rstrip("s"))
        results.append({"video": name, "model": model.name, "frames_decoded": decoded, "frames_analysed": analysed,
                        "seconds": round(seconds, 2), "analysed_fps": round(analysed / seconds, 1),
                        "decoded_fps": round(decoded / seconds, 1), "cases": cases,
                        "wall_with_startup_s": round(wall, 2)})
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
