"""Train the project's detector with ultralytics, export it to ONNX and measure it per source.

ultralytics is imported here only, so the patrol never needs it at run time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.synth.actors import CLASSES


def train(data_yaml: Path, *, out_dir: Path, epochs: int, imgsz: int, hours: float | None = None, batch: int = 16,
          model: str = "yolov8n.yaml", name: str = "patrol") -> tuple[Path, int]:
    """Trains from scratch (no pretrained weights can be fetched here); returns best.pt and the
    number of epochs actually run.

    ``hours`` caps the wall time (ultralytics then fits the epochs and the learning-rate schedule to it).
    """
    from ultralytics import YOLO

    yolo = YOLO(model)
    yolo.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=0,
               project=str(out_dir.resolve()), name=name, exist_ok=True, plots=False, verbose=False,
               mosaic=1.0, close_mosaic=max(1, epochs // 5), patience=epochs, amp=False, cache=True, time=hours)
    return out_dir / name / "weights" / "best.pt", yolo.trainer.epoch + 1


def evaluate(weights: Path, holdouts: dict[str, Path], imgsz: int) -> dict:
    """mAP50 / mAP50-95 per class on each held-out set (only classes the set is labelled with)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    results = {}
    for name, data_yaml in holdouts.items():
        metrics = model.val(data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", workers=0, plots=False,
                            verbose=False, split="val")
        per_class = {}
        for i, class_index in enumerate(metrics.box.ap_class_index):
            per_class[CLASSES[int(class_index)]] = {
                "mAP50": round(float(metrics.box.ap50[i]), 4),
                "mAP50-95": round(float(metrics.box.ap[i]), 4),
            }
        results[name] = {"mAP50": round(float(metrics.box.map50), 4), "mAP50-95": round(float(metrics.box.map), 4),
                         "per_class": per_class}
    return results


def export_onnx(weights: Path, out: Path, imgsz: int) -> Path:
    """ONNX with dynamic batch and input size, so the detector can letterbox to a rectangle."""
    from ultralytics import YOLO

    exported = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=17))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, out)
    return out


if __name__ == "__main__":
    import argparse

    from pipeline.train.card import write_model_card
    from pipeline.train.mix import build_mix
    from pipeline.train.sources import shared_sources

    parser = argparse.ArgumentParser(description="train + export + evaluate the default model")
    parser.add_argument("--synth", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--per-source", type=int, default=120)
    parser.add_argument("--hours", type=float, default=None)
    args = parser.parse_args()
    sources = list(shared_sources().values())
    counts = build_mix(args.work / "mix", args.synth, sources, per_source_train=args.per_source)
    best, epochs_run = train(args.work / "mix" / "data.yaml", out_dir=args.work / "runs", epochs=args.epochs,
                             imgsz=args.imgsz, hours=args.hours)
    export_onnx(best, args.out, args.imgsz)
    holdouts = {"synthetic": args.work / "mix" / "holdout-synthetic.yaml"}
    holdouts |= {s.name: args.work / "mix" / f"holdout-{s.name}.yaml" for s in sources}
    report = {"train_images": counts, "epochs": epochs_run, "imgsz": args.imgsz,
              "holdout": evaluate(best, holdouts, args.imgsz),
              "attribution": {s.name: s.attribution for s in sources}}
    (args.work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"card: {write_model_card(args.out, report, name=args.out.stem)}")
