"""Grouped non-maximum suppression: boxes suppress each other only within their group.

OpenCV's ``NMSBoxesBatched`` (C++) gives the same kept set as a vectorised numpy greedy NMS and
is 8-14x faster at 10-300 candidates on our 2-core CPU, so we use it rather than our own.
"""

from __future__ import annotations

import cv2
import numpy as np


def grouped_nms(xyxy: np.ndarray, score: np.ndarray, group: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes to keep, best score first; boxes of different groups never suppress
    each other."""
    if len(score) == 0:
        return np.zeros(0, np.intp)
    xywh = xyxy.astype(np.float32, copy=True)
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(
        xywh,
        score.astype(np.float32),
        group.astype(np.int32),
        score_threshold=0.0,
        nms_threshold=iou_threshold,
    )
    return np.asarray(keep, np.intp).reshape(-1)
