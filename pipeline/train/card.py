"""Model cards of the models this project trains: how to feed them, what they saw, how well they do."""

from __future__ import annotations

from pathlib import Path

from pipeline.detect.card import CARD_SUFFIX, InputSize, ModelCard, Preprocess, sha256_file, write_card
from pipeline.synth.actors import CLASSES
from pipeline.train.report import card_metrics
from pipeline.types import Role

LIMITS = """\
What it will and will not recognise. No pretrained weights went into it (none can be fetched here):
it learnt from random init, mostly on the project's own synthetic street scenes (flat-shaded OpenCV
drawings of cars, buses, e-bikes, people, umbrella stalls on carts, green/grey bins, bagged garbage)
plus the real images counted under `data`. On the synthetic street it is reliable; on real streets
it is not yet: the held-out real figures above are what to expect of it on real footage. The real
sets are a fixed angled parking-lot camera (cars), drone tiles of Bogotá street vendors (stalls seen
from above) and close-up photos of bagged garbage; no public street-camera footage of stalls on a
sidewalk or of overflowing bins exists to train or test on. bin and overflowing_bin were learnt from
synthetic bins only. For vehicles on real cameras, run a COCO detector (YOLOX-nano, card in
models/cards/) beside it until this model is retrained on reviewed real cases. The parking-lot-cam
figure flatters it: its held-out frames come from the same fixed camera and video as its training
frames, and its 'vehicle' boxes are occupied-space footprints, not car boxes. The street-vendors,
trash-bags and road-video figures are the honest measure of real-image transfer; road-video (cars
driving through a lot, filmed from above, labelled by the project) is a view no labelled car of its training
images shows, and the one real-car set it has not trained on."""

PRETRAINED_LIMITS = """\
What it will and will not recognise. It started from {parent} (COCO-pretrained; its backbone kept as
it was, --freeze {freeze}) and was fine-tuned on the images counted under `data`: the project's
synthetic street scenes and the real sets there, with the cars, e-bikes and people in the real
photos labelled by the COCO teacher {teacher}. Vehicles, non-motor vehicles and persons it knows
from COCO's real photographs; stalls only from drone tiles of Bogotá street vendors and synthetic
carts; garbage from close-up photos of bagged garbage and synthetic heaps; bin and overflowing_bin
from synthetic bins only: no public street-camera footage of stalls on a sidewalk or of overflowing
bins exists to train or test on, so treat those classes as unproven on a real street until
reviewed cases retrain it. The held-out real figures above are what to expect; the parking-lot-cam
figures flatter it (its held-out frames come from the camera it trained on, and its 'vehicle'
boxes there are occupied-space footprints)."""

PRECISION_NOTES = {
    "fp16": "Weights and arithmetic converted to FP16 (onnxruntime.transformers.float16, inputs and outputs "
            "kept float32).",
    "int8": "Statically quantised to INT8 (ONNX Runtime, QDQ, per-channel weights, the detection head's "
            "decoding kept in float), calibrated on real frames: {calibration}.",
}


def trained_card(onnx_path: Path, training: dict, *, name: str, eval_report: dict | None = None) -> ModelCard:
    """The card of a model exported from a ``patrol train`` run; ``training`` is that run's report."""
    counts = ", ".join(f"{source} {n}" for source, n in training["train_images"].items())
    sources = "; ".join(f"{name}: {s['attribution']} ({s['licence']})" for name, s in training["sources"].items())
    init = training.get("init")
    started_from = f"fine-tuned from {init}" if init else "architecture only, random init"
    parent = training.get("parent") or {}
    parent_licence = parent.get("licence") or ""
    if parent_licence.startswith("AGPL"):
        licence = (f"AGPL-3.0: fine-tuned from {parent['name']} (sha256 {parent['sha256'][:12]}…), whose licence is "
                   f"AGPL-3.0 and passes to weights trained from it; the project's code stays Apache-2.0. "
                   f"Training data licences per source in `data`.")
    else:
        licence = "Apache-2.0 (the project's own weights). Training data licences per source in `data`."
    teacher = training.get("teacher")
    roles = training.get("roles", {c: c for c in CLASSES})
    notes = LIMITS if not parent_licence.startswith("AGPL") else PRETRAINED_LIMITS.format(
        parent=parent.get("file"), freeze=training.get("freeze", 0),
        teacher=f"({teacher['model']}, score >= {teacher['conf']})" if teacher else "(none)")
    if len(roles) < len(training.get("classes", CLASSES)):
        notes += (f"\nIt kept its parent's {len(training['classes'])} classes and whole detection head "
                  "(--keep-classes); the classes no role maps are still in its output and read by no rule.")
    return ModelCard(
        name=name,
        sha256=sha256_file(onnx_path),
        layout="ultralytics",
        input=InputSize(width=training["imgsz"], height=training["imgsz"]),
        dynamic_shape=True,
        stride=32,
        preprocess=Preprocess(channel_order="rgb", scale=1 / 255, resize="letterbox_center", pad_value=114),
        classes=training.get("classes", list(CLASSES)),
        roles={name: Role(project_class) for name, project_class in roles.items()},
        source=f"Trained by this project with ultralytics {training['base']} ({started_from}), "
               f"{training['epochs']} epochs at {training['imgsz']} px on CPU; exported to ONNX "
               "(dynamic batch and size), FP32.",
        licence=licence,
        data=f"dataset {training['dataset']} ({training['spec']}): train images: {counts}. Held out: each "
             f"source's held-out split. Sources: {sources}",
        metrics=card_metrics(eval_report) if eval_report else {"precision": "fp32"},
        notes=notes,
    )


def variant_card(base: ModelCard, variant_path: Path, precision: str, *, calibration: str = "",
                 name: str | None = None) -> ModelCard:
    """The card of an FP16 or INT8 copy of ``base``'s weights: the same input, classes and data
    (named ``<base name>-<precision>`` unless ``name`` is given)."""
    return base.model_copy(update={
        "name": name or f"{base.name}-{precision}",
        "sha256": sha256_file(variant_path),
        "source": f"{base.source} {PRECISION_NOTES[precision].format(calibration=calibration)}",
        "metrics": {"precision": precision, "derived_from": {"name": base.name, "sha256": base.sha256}},
    })


def with_eval(card: ModelCard, eval_report: dict) -> ModelCard:
    """``card`` quoting ``eval_report``'s figures (its precision, provenance and `patrol retrain` lineage kept)."""
    kept = {key: card.metrics[key] for key in ("derived_from", "lineage") if key in card.metrics}
    return card.model_copy(update={"metrics": {**card_metrics(eval_report), **kept}})


def card_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + CARD_SUFFIX)


def save_card(card: ModelCard, onnx_path: Path) -> Path:
    path = card_path(onnx_path)
    write_card(card, path)
    return path
