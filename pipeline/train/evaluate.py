"""Box-level accuracy of an ONNX detector on held-out labelled images: mAP50 and mAP50-95 per class.

The model runs through the patrol's own ``Detector`` (ONNX Runtime, the card's letterbox and
decoder), so the figures are those of the deployed path, for any precision variant or layout, with
no ultralytics needed. The arithmetic follows ultralytics' val: score threshold 0.001, NMS IoU 0.7,
at most 300 boxes per image, predictions matched to labels per IoU threshold greedily by IoU, AP as
the area under the monotone precision envelope sampled at 101 recall points.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

import pipeline
from pipeline.detect import Detector
from pipeline.rules.boxes import box_iou
from pipeline.synth.actors import CLASSES
from pipeline.train.sources import Source

REPO = Path(pipeline.__file__).resolve().parents[1]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0, 1, 101)  # where AP samples the precision envelope
EVAL_CONF = 0.001
EVAL_NMS_IOU = 0.7
MAX_BOXES = 300


@dataclass
class ImageResult:
    """One image's predictions, each marked correct or not at every IoU threshold, and its labels' classes."""

    correct: np.ndarray  # (P, 10) bool
    score: np.ndarray  # (P,)
    predicted_class: np.ndarray  # (P,) project class ids
    label_class: np.ndarray  # (L,)


def match_image(pred_xyxy: np.ndarray, pred_class: np.ndarray, label_xyxy: np.ndarray,
                label_class: np.ndarray) -> np.ndarray:
    """(P, 10) bool: prediction p is a true positive at IoU threshold t (one label per prediction and
    one prediction per label, pairs taken in order of falling IoU)."""
    correct = np.zeros((len(pred_xyxy), len(IOU_THRESHOLDS)), bool)
    if not len(pred_xyxy) or not len(label_xyxy):
        return correct
    iou = box_iou(label_xyxy, pred_xyxy) * (label_class[:, None] == pred_class[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        pairs = np.argwhere(iou >= threshold)
        if not len(pairs):
            continue
        pairs = pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]
        pairs = pairs[np.unique(pairs[:, 1], return_index=True)[1]]
        pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]
        correct[pairs[:, 1], t] = True
    return correct


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    envelope = np.flip(np.maximum.accumulate(np.flip(np.concatenate([[1.0], precision, [0.0]]))))
    sampled = np.interp(RECALL_POINTS, np.concatenate([[0.0], recall, [1.0]]), envelope)
    return float(np.sum((sampled[1:] + sampled[:-1]) / 2 * np.diff(RECALL_POINTS)))  # trapezoids


def summarise(results: Iterable[ImageResult], classes: list[str]) -> dict:
    """mAP50 / mAP50-95 over ``classes`` (those the set is labelled with) and per class."""
    results = list(results)
    per_class = {name: {"mAP50": round(ap[0], 4), "mAP50-95": round(float(np.mean(ap)), 4), "instances": instances}
                 for name, (ap, instances) in _class_aps(results, classes, len(IOU_THRESHOLDS)).items()}
    return {
        "images": len(results),
        "mAP50": round(float(np.mean([c["mAP50"] for c in per_class.values()])), 4) if per_class else None,
        "mAP50-95": round(float(np.mean([c["mAP50-95"] for c in per_class.values()])), 4) if per_class else None,
        "per_class": per_class,
    }


def map50(results: Iterable[ImageResult], classes: list[str]) -> float | None:
    """``summarise(results, classes)["mAP50"]``, computed at IoU 0.5 alone: a bootstrap asks for it
    thousands of times."""
    aps = [round(ap[0], 4) for ap, _ in _class_aps(list(results), classes, 1).values()]
    return round(float(np.mean(aps)), 4) if aps else None


def _class_aps(results: list[ImageResult], classes: list[str], thresholds: int) -> dict[str, tuple[list[float], int]]:
    """Per class of ``classes`` labelled in ``results``: its AP at the first ``thresholds`` IoU
    thresholds, and its labelled instances."""
    correct = (np.concatenate([r.correct[:, :thresholds] for r in results]) if results
               else np.zeros((0, thresholds), bool))
    score = np.concatenate([r.score for r in results]) if results else np.zeros(0)
    predicted = np.concatenate([r.predicted_class for r in results]) if results else np.zeros(0, int)
    labelled = np.concatenate([r.label_class for r in results]) if results else np.zeros(0, int)
    order = np.argsort(-score, kind="stable")
    correct, predicted = correct[order], predicted[order]
    aps = {}
    for name in classes:
        class_id = CLASSES.index(name)
        instances = int((labelled == class_id).sum())
        if not instances:
            continue
        hits = correct[predicted == class_id]
        true_pos = np.cumsum(hits, axis=0)
        false_pos = np.cumsum(~hits, axis=0)
        recall = true_pos / instances
        precision = true_pos / np.maximum(true_pos + false_pos, 1e-9)
        aps[name] = ([average_precision(recall[:, t], precision[:, t]) if len(hits) else 0.0
                      for t in range(thresholds)], instances)
    return aps


@dataclass(frozen=True)
class MeasuredSet:
    """A held-out set measured image by image, and the classes it is labelled with: its mAP, and
    what a paired comparison of two models on the same images resamples (pipeline/train/gate.py)."""

    classes: list[str]
    images: list[ImageResult]

    def summary(self) -> dict:
        return summarise(self.images, self.classes)


Labelled = Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]


def measure_images(detector: Detector, labelled: Labelled, classes: list[str]) -> MeasuredSet:
    """``detector`` over (BGR image, label xyxy boxes in pixels, label project class ids), over
    ``classes`` (those the images are labelled with).

    The detector's classes count as the project classes their card maps them to (a COCO model's
    ``car`` as ``vehicle``); a class mapped to none is never counted.
    """
    roles = [detector.card.role_of(c).value for c in detector.card.classes]
    project_id = np.array([CLASSES.index(r) if r in CLASSES else -1 for r in roles])
    measured = np.array([CLASSES.index(c) for c in classes])
    results = []
    for image, label_xyxy, label_class in labelled:
        detections = detector.detect([image])[0]
        keep = np.argsort(-detections.score, kind="stable")[:MAX_BOXES]
        keep = keep[np.isin(project_id[detections.class_id[keep]], measured)]
        pred_class = project_id[detections.class_id[keep]]
        results.append(ImageResult(
            correct=match_image(detections.xyxy[keep], pred_class, label_xyxy, label_class),
            score=detections.score[keep], predicted_class=pred_class, label_class=label_class))
    return MeasuredSet(list(classes), results)


def measure_source(detector: Detector, source: Source, *, progress: bool = True) -> MeasuredSet:
    """``detector`` on ``source``'s held-out images."""
    def labelled():
        for image_path in tqdm(source.holdout_images(), desc=f"eval {source.name}", unit="img", disable=not progress):
            image = cv2.imread(str(image_path))
            height, width = image.shape[:2]
            labels = np.array([[float(v) for v in line.split()]
                               for line in source.label_lines(image_path)]).reshape(-1, 5)
            cx, cy, w, h = (labels[:, i] * scale for i, scale in zip(range(1, 5), (width, height, width, height)))
            yield image, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), labels[:, 0].astype(int)

    return measure_images(detector, labelled(), source.classes)


def evaluate_video_labels(detector: Detector, video: Path, labels_json: Path) -> dict:
    return measure_video_labels(detector, video, labels_json).summary()


def measure_video_labels(detector: Detector, video: Path, labels_json: Path) -> MeasuredSet:
    """``detector`` on the labelled frames of ``video``: ``labels_json`` names one project
    class and gives each labelled frame's xyxy pixel boxes by frame index
    (annotations/tools/static_camera_labels.py writes such files)."""
    labels = json.loads(labels_json.read_text(encoding="utf-8"))
    boxes = {int(index): np.array(b, dtype=np.float32).reshape(-1, 4) for index, b in labels["frames"].items()}
    class_id = CLASSES.index(labels["class"])

    def labelled():
        with av.open(str(video)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in boxes:
                    yield frame.to_ndarray(format="bgr24"), boxes[index], np.full(len(boxes[index]), class_id)

    return measure_images(detector, labelled(), [labels["class"]])


def evaluate_photo_labels(detector: Detector, labels_json: Path) -> dict:
    return measure_photo_labels(detector, labels_json).summary()


def measure_photo_labels(detector: Detector, labels_json: Path) -> MeasuredSet:
    """``detector`` on photos labelled by hand: ``labels_json`` names their folder under
    ``photos`` (relative to the repository), the ``classes`` it labels, and per file name
    ``[class, x1, y1, x2, y2]`` boxes in 0-1 image coordinates."""
    doc = json.loads(labels_json.read_text(encoding="utf-8"))
    folder = REPO / doc["photos"]

    def labelled():
        for name, boxes in sorted(doc["images"].items()):
            image = cv2.imread(str(folder / name))
            if image is None:
                raise ValueError(f"{folder / name}: not an image ({labels_json})")
            height, width = image.shape[:2]
            xyxy = np.array([b[1:] for b in boxes], np.float32).reshape(-1, 4) * [width, height, width, height]
            yield image, xyxy, np.array([CLASSES.index(b[0]) for b in boxes], int)

    return measure_images(detector, labelled(), doc["classes"])


def evaluate_holdouts(model: Path, sources: dict[str, Source], *, videos: dict[str, tuple[Path, Path]] | None = None,
                      photos: dict[str, Path] | None = None, progress: bool = True) -> dict[str, dict]:
    """mAP on each source's held-out images, on each of ``videos`` (name: video, labels JSON) and
    of ``photos`` (name: labels JSON)."""
    measured = measure_holdouts(model, sources, videos=videos, photos=photos, progress=progress)
    return {name: result.summary() for name, result in measured.items()}


def measure_holdouts(model: Path, sources: dict[str, Source], *, videos: dict[str, tuple[Path, Path]] | None = None,
                     photos: dict[str, Path] | None = None, progress: bool = True) -> dict[str, MeasuredSet]:
    """``evaluate_holdouts``' sets measured image by image."""
    detector = Detector(model, conf_threshold=EVAL_CONF, iou_threshold=EVAL_NMS_IOU)
    measured = {name: measure_source(detector, source, progress=progress)
                for name, source in sources.items() if source.holdout_images()}
    for name, (video, labels_json) in (videos or {}).items():
        measured[name] = measure_video_labels(detector, video, labels_json)
    for name, labels_json in (photos or {}).items():
        measured[name] = measure_photo_labels(detector, labels_json)
    return measured


def save_measured(measured: dict[str, MeasuredSet], path: Path) -> Path:
    """``measured`` as one .npz (each set's per-image arrays end to end, with the counts that cut them apart)."""
    arrays: dict[str, np.ndarray] = {"sets": np.array(json.dumps({n: m.classes for n, m in measured.items()}))}
    for index, result in enumerate(measured.values()):
        for field in ("correct", "score", "predicted_class", "label_class"):
            parts = [getattr(image, field) for image in result.images]
            arrays[f"{index}.{field}"] = np.concatenate(parts) if parts else np.zeros(0)
            arrays[f"{index}.{field}.counts"] = np.array([len(p) for p in parts], int)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_measured(path: Path) -> dict[str, MeasuredSet]:
    with np.load(path) as arrays:
        sets = json.loads(str(arrays["sets"]))
        return {name: MeasuredSet(classes, list(_images(arrays, index)))
                for index, (name, classes) in enumerate(sets.items())}


def _images(arrays, index: int) -> Iterator[ImageResult]:
    fields = ("correct", "score", "predicted_class", "label_class")
    if not len(arrays[f"{index}.score.counts"]):
        return
    cut = {f: np.split(arrays[f"{index}.{f}"], np.cumsum(arrays[f"{index}.{f}.counts"])[:-1]) for f in fields}
    for correct, score, predicted, label in zip(*(cut[f] for f in fields), strict=True):
        yield ImageResult(correct=correct.reshape(-1, len(IOU_THRESHOLDS)).astype(bool), score=score,
                          predicted_class=predicted.astype(int), label_class=label.astype(int))
