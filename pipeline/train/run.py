"""Train the project's detector with ultralytics and export it to ONNX.

ultralytics is imported inside these functions only, so nothing else needs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def train(data_yaml: Path, *, out_dir: Path, epochs: int, imgsz: int, hours: float | None = None, batch: int = 16,
          model: str = "yolov8n.yaml", name: str = "patrol", freeze: int = 0) -> tuple[Path, int]:
    """Trains on the CPU, from scratch (``model`` an architecture YAML: no pretrained weights can be
    fetched here) or from an earlier run's checkpoint (``model`` a .pt); returns best.pt and the
    number of epochs actually run.

    ``hours`` caps the wall time (ultralytics then fits the epochs and the learning-rate schedule to it).
    ``freeze`` keeps the first layers as the checkpoint has them.
    """
    from ultralytics import YOLO

    yolo = YOLO(model)
    yolo.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=0,
               project=str(out_dir.resolve()), name=name, exist_ok=True, plots=False, verbose=False,
               mosaic=1.0, close_mosaic=max(1, epochs // 5), patience=epochs, amp=False, cache=True, time=hours,
               freeze=freeze or None)
    return out_dir / name / "weights" / "best.pt", yolo.trainer.epoch + 1


def export_onnx(weights: Path, out: Path, imgsz: int) -> Path:
    """ONNX with dynamic batch and input size, so the detector can batch and letterbox to a rectangle."""
    from ultralytics import YOLO

    exported = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=17))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, out)
    return out


def weights_classes(weights: Path) -> list[str]:
    """The class names stored in an ultralytics checkpoint, in class-id order."""
    from ultralytics import YOLO

    names = YOLO(str(weights)).names
    return [names[i] for i in sorted(names)]
