"""The model card of a model this project trained: how to feed it, what it saw, how well it does."""

from __future__ import annotations

from pathlib import Path

from pipeline.detect.card import CARD_SUFFIX, InputSize, ModelCard, Preprocess, sha256_file, write_card
from pipeline.synth.actors import CLASSES
from pipeline.types import Role

LIMITS = """\
What it will and will not recognise. It was trained from scratch (no pretrained weights can be
fetched here) mostly on the project's own synthetic street scenes (flat-shaded OpenCV drawings
of cars, buses, e-bikes, people, umbrella stalls on carts, green/grey bins, bagged garbage) plus a
few hundred real images. On the synthetic street it is reliable; on real streets it is not yet:
the held-out real figures above are what to expect of it on real footage. The real sets are a
fixed angled parking-lot camera (cars), drone tiles of Bogotá street vendors (stalls seen from
above) and close-up photos of bagged garbage; no public street-camera footage of stalls on a
sidewalk or of overflowing bins exists to train or test on. bin and overflowing_bin were learnt
from synthetic bins only. For vehicles on real cameras, run a COCO detector (YOLOX-nano, card in
models/cards/) beside it until this model is retrained on reviewed real cases.
The parking-lot-cam figure flatters it: its held-out frames come from the same fixed camera and
video as its training frames, and its 'vehicle' boxes are occupied-space footprints, not car
boxes. The street-vendors and trash-bags figures are the honest measure of real-image transfer."""


def model_card(onnx_path: Path, report: dict, *, name: str) -> ModelCard:
    counts = ", ".join(f"{source} {n}" for source, n in report["train_images"].items())
    attribution = "; ".join(f"{k}: {v}" for k, v in report["attribution"].items())
    return ModelCard(
        name=name,
        sha256=sha256_file(onnx_path),
        layout="ultralytics",
        input=InputSize(width=report["imgsz"], height=report["imgsz"]),
        dynamic_shape=True,
        stride=32,
        preprocess=Preprocess(channel_order="rgb", scale=1 / 255, resize="letterbox_center", pad_value=114),
        classes=list(CLASSES),
        roles={c: Role(c) for c in CLASSES},
        source="Trained by this project with ultralytics YOLOv8n (architecture only, random init), "
               f"{report['epochs']} epochs at {report['imgsz']} px on CPU; exported to ONNX (dynamic batch and size).",
        licence="Apache-2.0 (the project's own weights). Training data licences: synthetic scenes are the "
                "project's own; the real images are CC BY 4.0 (attribution in `data`).",
        data=f"train images: {counts}. Held out: synthetic val split and each real set's valid split. "
             f"Real sets (../shared/datasets, CC BY 4.0): {attribution}",
        metrics={"holdout": report["holdout"],
                 "note": "mAP50 / mAP50-95 from ultralytics val at the training size, per held-out set, "
                         "only over the classes each set is labelled with"},
        notes=LIMITS,
    )


def write_model_card(onnx_path: Path, report: dict, *, name: str) -> Path:
    path = onnx_path.with_name(onnx_path.stem + CARD_SUFFIX)
    write_card(model_card(onnx_path, report, name=name), path)
    return path
