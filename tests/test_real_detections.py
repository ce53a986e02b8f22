"""A parked car on a real camera, as the detector really sees it on a bad evening: scores of 0.25-0.45
and a box that flickers between a tight and a loose fit. Each still gives exactly one case.

The frame and its boxes are real (a fixed parking-lot camera in ../shared, the COCO detector);
only the scores are scaled down, or the box widened on alternate frames, as dusk, rain or a
shadow do, and the frame is fed as a still camera would be.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from support import SAMPLE_CAMERA

from pipeline.config import load_camera
from pipeline.detect import Detector
from pipeline.engine import CameraPipeline
from pipeline.types import Detections, Frame

FPS = 5
DWELL_S = 10.0


@pytest.fixture(scope="module")
def parked(shared: Path) -> tuple[np.ndarray, Detections, np.ndarray]:
    """A real frame, the detector's vehicles on it, and the most certain one."""
    frame_path = sorted((shared / "datasets" / "parking-lot-cam" / "valid" / "images").glob("*.jpg"))[0]
    image = cv2.imread(str(frame_path))
    found = Detector(shared / "models" / "yolov8n_coco_640.onnx", parallel_runs=1).detect([image])[0]
    vehicles = found[found.role == "vehicle"]
    assert len(vehicles) >= 3, f"the COCO detector should box the cars of {frame_path.name}"
    return image, vehicles, vehicles.xyxy[int(np.argmax(vehicles.score))]


def _camera_around(box: np.ndarray, image: np.ndarray, *, loose_margin: float = 0.0):
    """The sample camera with one no-parking zone drawn around ``box`` (and room for its loose fit)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    margin_x, margin_y = (x2 - x1) * (0.1 + loose_margin), (y2 - y1) * 0.3
    polygon = [[max(0.0, (x1 - margin_x) / width), max(0.0, (y1 - margin_y) / height)],
               [min(1.0, (x2 + margin_x) / width), max(0.0, (y1 - margin_y) / height)],
               [min(1.0, (x2 + margin_x) / width), min(1.0, (y2 + margin_y) / height)],
               [max(0.0, (x1 - margin_x) / width), min(1.0, (y2 + margin_y) / height)]]
    camera = load_camera(SAMPLE_CAMERA)
    zone = camera.zones[0].model_copy(update={
        "id": "painted-lane", "polygon": polygon,
        "rules": [camera.zones[0].rules[0].model_copy(update={"dwell_s": DWELL_S})]})
    return camera.model_copy(update={"zones": [zone], "analysis_fps": FPS})


def _still_camera(camera, image: np.ndarray, detections_at) -> list:
    pipeline = CameraPipeline(camera, "test")
    filed = []
    for index in range(int(3 * DWELL_S * FPS)):
        pts = index / FPS
        filed += pipeline.step(Frame(camera.id, index, pts, 1_770_000_000.0 + pts, image), detections_at(index))
    return filed


def test_a_parked_car_scored_between_025_and_045_is_tracked_and_files_one_case(parked) -> None:
    image, vehicles, car = parked
    # dusk: every score squeezed into 0.25-0.45, in the order the detector ranked them
    low = 0.25 + 0.2 * (vehicles.score - vehicles.score.min()) / max(float(np.ptp(vehicles.score)), 1e-6)
    dim = Detections(vehicles.xyxy, low.astype(np.float32), vehicles.class_id, vehicles.role)
    filed = _still_camera(_camera_around(car, image), image, lambda index: dim)
    assert len(filed) == 1, f"a car parked in the zone for {3 * DWELL_S:.0f} s filed {len(filed)} cases"
    assert filed[0].kind == "illegal_parking"


def test_a_box_flickering_between_tight_and_loose_keeps_one_dwell_and_one_case(parked) -> None:
    image, vehicles, car = parked
    row = int(np.argmax(vehicles.score))
    tight = vehicles[np.array([row])]  # its neighbours would stand in the widened zone too
    x1, y1, x2, y2 = car
    loose = Detections(np.array([[x1, y1, x2 + 0.7 * (x2 - x1), y2]], np.float32), tight.score, tight.class_id,
                       tight.role)  # its shadow boxed with it, one frame in two
    filed = _still_camera(_camera_around(car, image, loose_margin=0.7), image,
                          lambda index: loose if index % 2 else tight)
    assert len(filed) == 1, f"a flickering box filed {len(filed)} cases"
    assert filed[0].confirmed_s <= DWELL_S + 1.0, f"the flicker restarted the dwell: filed at {filed[0].confirmed_s} s"
