"""When two cases, or a case and a ground-truth episode, are taken for the same event: the same
object (boxes overlapping by IoU >= ``MIN_IOU``) seen confirmed within ``TOLERANCE_S`` of the other.
Shadow runs (``pipeline.engine.shadow``) pair a candidate's cases with the live model's by it, and
``patrol eval`` (``pipeline.train.events``) a case with the episode it reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .boxes import box_iou

TOLERANCE_S = 3.0
MIN_IOU = 0.3


def boxes_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Two xyxy boxes taken for the same object: IoU >= ``MIN_IOU``."""
    return bool(box_iou(np.array([a], float), np.array([b], float))[0, 0] >= MIN_IOU)
