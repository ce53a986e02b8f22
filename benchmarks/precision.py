"""What FP16 and INT8 cost and buy: mAP50 on every held-out set and bare ONNX Runtime CPU speed, per precision.

    python benchmarks/precision.py [--model models/patrol-street.onnx] [--out benchmarks/results/precision.json]

Makes the FP16 and INT8 copies of the FP32 model (as `patrol export --half` / `--int8` do, INT8
calibrated on frames of ../shared/videos/car-detection.mp4 and the sample street) in --work, then
measures each on the dataset spec's held-out splits (the patrol's Detector, as `patrol eval`) and
times a bare ONNX Runtime session on a 1x3xHxW input at the card's input size.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.detect import load_card, open_session
from pipeline.train.card import save_card, variant_card
from pipeline.train.evaluate import evaluate_holdouts
from pipeline.train.precision import sample_frames, to_fp16, to_int8
from pipeline.train.sources import open_sources
from pipeline.train.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = (REPO.parent / "shared" / "videos" / "car-detection.mp4", REPO / "streams" / "samples" / "sample-street.mp4")


def make_variants(fp32: Path, work: Path, calibration_frames: int) -> dict[str, Path]:
    card = load_card(fp32)
    work.mkdir(parents=True, exist_ok=True)
    fp16 = to_fp16(fp32, work / f"{fp32.stem}-fp16.onnx")
    save_card(variant_card(card, fp16, "fp16"), fp16)
    int8 = to_int8(fp32, card, work / f"{fp32.stem}-int8.onnx", sample_frames(CALIBRATION, calibration_frames))
    save_card(variant_card(card, int8, "int8", calibration=f"{calibration_frames} frames of each of "
                           + ", ".join(v.name for v in CALIBRATION)), int8)
    return {"fp32": fp32, "fp16": fp16, "int8": int8}


def images_per_second(model: Path, seconds: float, threads: int | None) -> float:
    card = load_card(model)
    session = open_session(model, ["CPUExecutionProvider"], threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(
        (1, 3, card.input.height, card.input.width), np.float32)}
    for _ in range(5):  # warm-up: the first runs allocate and pick kernels
        session.run(None, feed)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        runs += 1
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "patrol-street.onnx", help="FP32 ONNX with a card")
    parser.add_argument("--spec", type=Path, default=REPO / "annotations" / "datasets" / "street.yaml")
    parser.add_argument("--work", type=Path, default=REPO / "var" / "bench" / "precision")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision.json")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per variant")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: its own choice)")
    parser.add_argument("--calibration-frames", type=int, default=32, help="per calibration video")
    args = parser.parse_args()

    variants = make_variants(args.model, args.work, args.calibration_frames)
    sources = open_sources(load_spec(args.spec), holdout_only_in=args.work / "holdout")
    card = load_card(args.model)
    results = {}
    for precision, model in variants.items():
        holdout = evaluate_holdouts(model, sources)
        results[precision] = {
            "file": str(model), "megabytes": round(model.stat().st_size / 2**20, 2),
            "mAP50": {name: r["mAP50"] for name, r in holdout.items()},
            "mAP50-95": {name: r["mAP50-95"] for name, r in holdout.items()},
            "images_per_s": round(images_per_second(model, args.seconds, args.threads), 1),
        }
    for precision, result in results.items():
        result["mAP50_change"] = {name: round(value - results["fp32"]["mAP50"][name], 4)
                                  for name, value in result["mAP50"].items()}
        result["speedup"] = round(result["images_per_s"] / results["fp32"]["images_per_s"], 2)
    report = {
        "model": {"name": card.name, "sha256": card.sha256},
        "input": f"1x3x{card.input.height}x{card.input.width}",
        "machine": {"cpu": platform.processor() or platform.machine(), "onnxruntime": ort.__version__,
                    "threads": args.threads or "default"},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for precision, result in results.items():
        change = ", ".join(f"{name} {delta:+.3f}" for name, delta in result["mAP50_change"].items())
        print(f"{precision}: {result['images_per_s']} img/s (x{result['speedup']}), {result['megabytes']} MB; "
              f"mAP50 vs fp32: {change}")
    print(f"precision: {args.out}")


if __name__ == "__main__":
    main()
