"""Real objects cut from a source's training images, to paste into synthetic streets.

Only training images are cut (a source's held-out split stays unseen), and the scenes they are
pasted into are training data under var/, never files the repo ships (see pipeline.synth.paste).
"""

from __future__ import annotations

import logging
import random

import cv2
import numpy as np

from pipeline.synth.paste import PLACES, Cutout
from pipeline.train.sources import Source

log = logging.getLogger(__name__)

MIN_SIDE_PX = 24  # smaller objects are mostly blur once scaled
MOST_PER_SOURCE = 400  # enough variety for a few thousand scenes, a few tens of MB in memory


def cutouts_of(source: Source, *, seed: int, most: int = MOST_PER_SOURCE) -> tuple[Cutout, ...]:
    """Up to ``most`` cut-outs of the pastable classes (a polygon's outline, a box's rectangle)
    from ``source``'s training images, drawn in an order fixed by ``seed``."""
    images = source.train_images()
    random.Random(seed).shuffle(images)
    found: list[Cutout] = []
    for image in images:
        shapes = [(cls, outline) for cls, outline in source.shapes(image) if cls in PLACES]
        if not shapes:
            continue
        pixels = cv2.imread(str(image))
        if pixels is None:
            log.warning("%s: cannot read the image; no cut-outs from it", image)
            continue
        height, width = pixels.shape[:2]
        for cls, outline in shapes:
            points = np.array([(x * width, y * height) for x, y in outline], np.float32)
            x1, y1 = np.floor(points.min(axis=0)).astype(int).clip(0)
            x2, y2 = np.ceil(points.max(axis=0)).astype(int)
            x2, y2 = min(int(x2), width), min(int(y2), height)
            if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
                continue
            mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
            cv2.fillPoly(mask, [np.round(points - (x1, y1)).astype(np.int32)], 255)
            found.append(Cutout(cls, pixels[y1:y2, x1:x2].copy(), mask))
            if len(found) >= most:
                return tuple(found)
    return tuple(found)
