"""Box arithmetic on ``x1, y1, x2, y2`` pixel boxes."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): an (N, M) array."""
    a = a[:, None, :]
    b = b[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def shared_shift(anchor: np.ndarray, box: np.ndarray) -> float:
    """How far ``box`` moved from ``anchor``, in units of ``box``'s longer side, counting per axis
    only the shift both edges make in the same direction. A moving object carries both edges
    along; a detector that flickers between a tight and a loose fit (a shadow or a mirror in the
    box, then not) moves one edge, or both apart, and the centre with them: that is not movement."""
    near, far = box[:2] - anchor[:2], box[2:] - anchor[2:]
    together = np.where(np.sign(near) == np.sign(far), np.sign(near) * np.minimum(np.abs(near), np.abs(far)), 0.0)
    longer_side = max(box[2] - box[0], box[3] - box[1], 1e-9)
    return float(np.hypot(*together) / longer_side)
