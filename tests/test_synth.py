"""The synthetic street: reproducible, its ground truth exact, and the shipped model sees it."""

from __future__ import annotations

import gzip
import json

import cv2
import numpy as np
import pytest
from support import DEFAULT_MODEL, SAMPLE_CAMERA, SAMPLE_VIDEO, truth_of

from pipeline.config import load_camera
from pipeline.detect import Detector
from pipeline.ingest import decode
from pipeline.synth import render_dataset, render_video, sample_scenario
from pipeline.synth.actors import CLASSES


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union else 0.0


def test_the_same_seed_renders_the_same_street(tmp_path):
    scenario = {"seed": 3, "width": 320, "height": 180, "fps": 5.0, "duration_s": 2.0}
    first = render_video(sample_scenario(**scenario), tmp_path / "a.mp4", seed=3, progress=False)
    second = render_video(sample_scenario(**scenario), tmp_path / "b.mp4", seed=3, progress=False)
    assert first["episodes"] == second["episodes"]
    boxes = [gzip.decompress((tmp_path / f"{n}.boxes.jsonl.gz").read_bytes()).decode() for n in ("a", "b")]
    assert boxes[0] == boxes[1] and boxes[0].count("\n") == 10


def test_the_sample_episodes_lie_in_the_zones_of_the_sample_camera():
    camera = load_camera(SAMPLE_CAMERA)
    truth = truth_of(SAMPLE_VIDEO)
    zones = {zone.id: zone.polygon_px((truth["width"], truth["height"])) for zone in camera.zones}

    for episode in truth["episodes"]:
        x1, _, x2, y2 = episode["box"]
        polygon = zones[episode["zone_id"]].astype(np.float32)
        assert cv2.pointPolygonTest(polygon, ((x1 + x2) / 2, y2 - 1), False) >= 0, episode


def test_a_rendered_training_set_has_a_label_file_per_image_in_class_range(tmp_path):
    data_yaml = render_dataset(tmp_path, 6, seed=2, val_fraction=0.34, progress=False)
    assert "names:" in data_yaml.read_text()
    for split, count in (("train", 4), ("val", 2)):
        images = sorted((tmp_path / split / "images").glob("*.jpg"))
        assert len(images) == count
        for image in images:
            lines = (tmp_path / split / "labels" / f"{image.stem}.txt").read_text().split()
            values = np.array(lines, float).reshape(-1, 5)
            assert ((values[:, 0] >= 0) & (values[:, 0] < len(CLASSES))).all()
            assert ((values[:, 1:] >= 0) & (values[:, 1:] <= 1)).all()


@pytest.mark.heavy
def test_the_default_model_finds_the_labelled_objects_of_the_sample():
    """Vehicles and stalls as what they are; the overflowing bin as a bin: the COCO-pretrained default
    learnt the overflowing state from drawn bins only and calls this one a plain bin on about half the
    frames (the sample's bin_overflow case is still filed: the replay tests hold that)."""
    detector = Detector(DEFAULT_MODEL)
    truth = {}
    with gzip.open(SAMPLE_VIDEO.with_name("sample-street.boxes.jsonl.gz"), "rt") as lines:
        for line in lines:
            row = json.loads(line)
            truth[round(row["pts_s"], 2)] = row["boxes"]
    accepted = {"vehicle": {"vehicle"}, "stall": {"stall"}, "overflowing_bin": {"overflowing_bin", "bin"}}
    found = {c: [0, 0] for c in accepted}
    for frame in decode(str(SAMPLE_VIDEO), camera_id="sample", analysis_fps=0.5):
        detections = detector.detect([frame.image])[0]
        for cls, *box in truth[round(frame.pts_s, 2)]:
            if cls in found and (box[2] - box[0]) * (box[3] - box[1]) > 30 * 30:
                found[cls][1] += 1
                found[cls][0] += any(role in accepted[cls] and iou(box, d) >= 0.5
                                     for role, d in zip(detections.role, detections.xyxy))
    bar = {"vehicle": 0.85, "stall": 0.85, "overflowing_bin": 0.75}
    for cls, (hits, total) in found.items():
        assert total > 0 and hits / total >= bar[cls], (cls, hits, total)
