"""`patrol eval`: a model's box accuracy on every held-out set and its case accuracy on videos with
ground truth, as one JSON report, a small PNG plot, and the figures a model card quotes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

import pipeline
from pipeline.config import load_camera
from pipeline.detect import load_card
from pipeline.rules.same_event import MIN_IOU, TOLERANCE_S
from pipeline.synth.actors import CLASSES
from pipeline.train.evaluate import EVAL_CONF, EVAL_NMS_IOU, MeasuredSet, measure_holdouts
from pipeline.train.events import (
    TruthEpisode,
    replay_cases,
    sample_street_truth,
    score_cases,
)
from pipeline.train.sources import Source

REPO = Path(pipeline.__file__).resolve().parents[1]
SAMPLE_VIDEO = REPO / "streams" / "samples" / "sample-street.mp4"
SAMPLE_CAMERA = REPO / "streams" / "sample-street.yaml"
PARKING_CAMERA = REPO / "annotations" / "eval" / "parking-lot-cam.yaml"
PARKING_UNLABELLED = REPO / "annotations" / "eval" / "parking-lot-cam.unlabelled-cars.json"
EVENT_SETS = ("sample-street", "parking-lot-cam")
# event videos drawn by `patrol synth`: their cases measure the rules on drawings, never a real street
SYNTHETIC_EVENT_SETS = frozenset({"sample-street"})
# held-out sets that are labelled frames of a video: name -> (video, labels JSON)
LABELLED_VIDEOS = {
    "road-video": (REPO.parent / "shared" / "videos" / "car-detection.mp4",
                   REPO / "annotations" / "eval" / "car-detection-road.labels.json"),
}

# held-out real photos labelled by hand: name -> labels JSON (their folder is named inside)
LABELLED_PHOTOS = {
    "street-garbage-amsterdam": REPO / "annotations" / "eval" / "street-garbage-amsterdam.labels.json",
}
# real photos with their plate text: name -> folder (labels.json, images/)
PLATE_SETS = {"ccpd-plates": REPO.parent / "shared" / "datasets" / "ccpd-plates"}

METHOD = {
    "holdout": f"patrol's Detector on ONNX Runtime (the deployed path), score >= {EVAL_CONF}, NMS IoU {EVAL_NMS_IOU}, "
               "COCO-style 101-point AP per class, only over the classes each set is labelled with",
    "events": f"pipeline.engine.replay of the video; a case matches an episode of its kind and zone confirmed "
              f"within [start + dwell - {TOLERANCE_S:g} s, end + {TOLERANCE_S:g} s] whose box it overlaps by IoU >= "
              f"{MIN_IOU}; precision = matches / cases filed, recall = matches / episodes at least dwell long",
    "plates": "exact match of the plate text read in the crop of the detector's smallest vehicle box over the "
              "labelled plate (cut as a case's evidence is: pipeline/train/plates.py); reader_alone: the reader "
              "on the whole photo",
    "street-garbage-amsterdam": "garbage_pile, bin and overflowing_bin boxes drawn by hand on 23 held-out real "
                                "street photos (annotations/eval/street-garbage-amsterdam.labels.json, its method "
                                "inside); no model here trains on any of the set's photos",
    "road-video": "vehicle boxes on the labelled frames (every 6th with a car in view, every 30th without) of "
                  "../shared/videos/car-detection.mp4, cars driving through a lot seen from above: "
                  "annotations/eval/car-detection-road.labels.json; no model here trains on this video",
    "parking-lot-cam events": "the set's frames as taken (train and valid), one per second in frame order, through "
                              "annotations/eval/parking-lot-cam.yaml; a model trained on the set's train split has "
                              "seen most of these frames, so this figure flatters it; one car the set's labels leave "
                              "out (cut by the frame's edge) is added to the truth by hand: "
                              "annotations/eval/parking-lot-cam.unlabelled-cars.json",
}


def evaluate_model(model: Path, sources: dict[str, Source], work: Path, *, events: tuple[str, ...] = EVENT_SETS,
                   parking_lot: Source | None = None, videos: dict[str, tuple[Path, Path]] | None = None,
                   photos: dict[str, Path] | None = None, plates: dict[str, Path] | None = None,
                   held_out: dict[str, MeasuredSet] | None = None, camera_settings: dict | None = None) -> dict:
    """Box accuracy on ``sources``' held-out images and on ``videos`` (name: video, labels JSON),
    case accuracy on ``events``, plate exact-match on ``plates`` (name: folder). ``held_out``: those
    box sets already measured image by image (``measure_holdouts``), by a caller that keeps them.
    ``camera_settings``: top-level fields set over the event videos' camera files."""
    if held_out is None:
        held_out = measure_holdouts(model, sources, videos=videos, photos=photos)
    card = load_card(model)
    report = {
        "model": {"path": str(model), "name": card.name, "sha256": card.sha256,
                  "precision": card.metrics.get("precision", "fp32")},
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": METHOD,
        "holdout": {name: measured.summary() for name, measured in held_out.items()},
        "events": {},
        "camera_settings": camera_settings or {},
        "plates": {},
    }
    if plates:
        from pipeline.detect import Detector
        from pipeline.train.plates import evaluate_plates

        detector = Detector(model, conf_threshold=0.25)
        report["plates"] = {name: evaluate_plates(detector, folder) for name, folder in plates.items()}
    if "sample-street" in events:
        camera = load_camera(SAMPLE_CAMERA, settings=camera_settings)
        cases, analysed = replay_cases(SAMPLE_VIDEO, camera, model, work / "replay-sample-street")
        report["events"]["sample-street"] = {**score_cases(
            cases, sample_street_truth(SAMPLE_VIDEO.with_name(SAMPLE_VIDEO.stem + ".gt.json")), camera),
            "replay": analysed}
    if "parking-lot-cam" in events:
        if parking_lot is None:
            raise ValueError("the parking-lot-cam events need the parking-lot-cam source")
        from pipeline.train.parking_lot import frames_as_taken, parking_truth, write_video

        camera = load_camera(PARKING_CAMERA, settings=camera_settings)
        frames = frames_as_taken(parking_lot.root)
        video = write_video(frames, work / "parking-lot-cam.mp4")
        cases, analysed = replay_cases(video, camera, model, work / "replay-parking-lot-cam")
        scored = score_cases(cases, parking_truth(parking_lot, frames, camera) + unlabelled_cars(PARKING_UNLABELLED),
                             camera)
        report["events"]["parking-lot-cam"] = {**scored, "replay": analysed, "frames": len(frames),
                                               "frame_indices": [f.index for f in frames]}
    return report


def unlabelled_cars(path: Path) -> list[TruthEpisode]:
    """Parking episodes of real cars a set's labels leave out, found and checked by eye (their file says how)."""
    episodes = json.loads(path.read_text(encoding="utf-8"))["episodes"]
    return [TruthEpisode(e["kind"], e["zone_id"], float(e["start_s"]), float(e["end_s"]),
                         tuple(float(v) for v in e["box"])) for e in episodes]


def card_metrics(report: dict) -> dict:
    """The figures a model card quotes from an eval report."""
    return {
        "precision": report["model"]["precision"],
        "evaluated_at": report["evaluated_at"],
        "holdout": {name: {"images": r["images"], "mAP50": r["mAP50"], "mAP50-95": r["mAP50-95"],
                           "per_class": {c: {"mAP50": v["mAP50"], "mAP50-95": v["mAP50-95"]}
                                         for c, v in r["per_class"].items()}}
                    for name, r in report["holdout"].items()},
        "events": {name: {key: r[key] for key in ("episodes", "cases", "matched", "duplicates", "false_positives",
                                                   "precision", "recall")}
                   for name, r in report["events"].items()},
        "plates": {name: {key: r[key] for key in ("images", "vehicle_found", "exact", "reader_alone")}
                   for name, r in report.get("plates", {}).items()},
        "method": report["method"],
    }


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{report['model']['name']}"
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    png_path = out / f"{stem}.png"
    cv2.imwrite(str(png_path), plot_report(report))
    return json_path, png_path


def plot_report(report: dict) -> np.ndarray:
    """Per-class mAP50 bars for each held-out set, then event precision and recall bars (OpenCV)."""
    rows = [(f"{name}: {cls}", v["mAP50"]) for name, r in report["holdout"].items()
            for cls, v in sorted(r["per_class"].items(), key=lambda kv: CLASSES.index(kv[0]))]
    rows += [(f"events {name}: {what}", r[what]) for name, r in report["events"].items()
             for what in ("precision", "recall") if r[what] is not None]
    label_w, bar_w, row_h, top = 330, 300, 20, 44
    image = np.full((top + row_h * len(rows) + 16, label_w + bar_w + 70, 3), 255, np.uint8)
    title = f"{report['model']['name']} ({report['model']['precision']}): mAP50 per class, event P/R"
    cv2.putText(image, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "0", (label_w - 4, top - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(image, "1", (label_w + bar_w - 4, top - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        colour = (60, 140, 220) if label.startswith("events") else (200, 120, 40)
        cv2.putText(image, label, (8, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(image, (label_w, y + 3), (label_w + int(bar_w * value), y + row_h - 3), colour, -1)
        cv2.rectangle(image, (label_w, y + 3), (label_w + bar_w, y + row_h - 3), (200, 200, 200), 1)
        cv2.putText(image, f"{value:.2f}", (label_w + bar_w + 8, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return image
