"""Plate exact-match on real photos: the detector's vehicle box, then the plate reader on it, as a case does.

The set is a folder of photos and a ``labels.json`` mapping each file name to its ``plate`` text and
``plate_box_xyxy`` (ccpd-plates in ../shared). The plate is read in the crop of the vehicle box
that holds the labelled plate's centre, cut the way the evidence renderer cuts it, so the figure
measures the detector and the reader together: a car the model misses is a plate not read.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.detect import Detector
from pipeline.evidence.annotate import crop_window
from pipeline.evidence.plate import PlateReader, normalise
from pipeline.evidence.render import PLATE_CROP_MARGIN


def evaluate_plates(detector: Detector, folder: Path, reader: PlateReader | None = None) -> dict:
    """``{"images", "vehicle_found", "exact", "reader_alone", "misses": [{"image", "plate", "read"}]}``:
    ``exact`` through the detector's vehicle box, ``reader_alone`` on the whole photo (the reader's
    own share, whatever the detector does)."""
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    reader = reader or PlateReader()
    found = exact = alone = 0
    misses = []
    for name, label in sorted(labels.items()):
        image = cv2.imread(str(folder / "images" / name))
        if image is None:
            raise ValueError(f"{folder / 'images' / name}: not an image")
        whole = reader.read(image)
        alone += whole is not None and whole.text == normalise(label["plate"])
        vehicle = _vehicle_over(detector.detect([image])[0], label["plate_box_xyxy"])
        read = None
        if vehicle is not None:
            found += 1
            left, top, right, bottom = crop_window(tuple(vehicle), (image.shape[1], image.shape[0]), PLATE_CROP_MARGIN)
            reading = reader.read(image[top:bottom, left:right])
            read = reading.text if reading is not None else None
        if read is not None and read == normalise(label["plate"]):
            exact += 1
        else:
            misses.append({"image": name, "plate": label["plate"],
                           "read": read if vehicle is not None else "no vehicle"})
    return {"images": len(labels), "vehicle_found": found, "exact": exact, "reader_alone": alone, "misses": misses}


def _vehicle_over(detections, plate_xyxy: list[float]) -> np.ndarray | None:
    """The smallest vehicle box holding the plate's centre (the car the plate is on, not one behind it)."""
    x = (plate_xyxy[0] + plate_xyxy[2]) / 2
    y = (plate_xyxy[1] + plate_xyxy[3]) / 2
    boxes = detections.xyxy[detections.role == "vehicle"]
    holding = boxes[(boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])]
    if not len(holding):
        return None
    return holding[int(np.argmin((holding[:, 2] - holding[:, 0]) * (holding[:, 3] - holding[:, 1])))]
