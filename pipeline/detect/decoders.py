"""One decoder per raw output layout: one image's output tensor -> candidate boxes.

Each decoder drops candidates under the confidence threshold *before* building boxes, so the
per-frame work scales with the few real candidates, not the thousands of anchors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from pipeline.detect.card import Layout
from pipeline.detect.letterbox import Size

YOLOX_STRIDES = (8, 16, 32)


class Candidates(NamedTuple):
    """Boxes before NMS, in input pixels."""

    xyxy: np.ndarray  # (N, 4) float32
    score: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32


Decode = Callable[[np.ndarray, Size, float], Candidates]


class Decoder(NamedTuple):
    decode: Decode
    # Where the per-anchor channels (box terms + one score per class) sit in one image's output,
    # and how many of them precede the class scores: lets a card's class list be checked
    # against the model before the first frame.
    channel_axis: int
    box_channels: int


def _candidates(
    cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, score: np.ndarray, class_id: np.ndarray
) -> Candidates:
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return Candidates(xyxy.astype(np.float32), score.astype(np.float32), class_id.astype(np.int32))


def decode_ultralytics(output: np.ndarray, input_size: Size, conf_threshold: float) -> Candidates:
    """``[4+nc, N]``: cx, cy, w, h in input pixels, then per-class scores (no objectness)."""
    class_scores = output[4:]
    best = class_scores.max(axis=0)
    keep = np.flatnonzero(best >= conf_threshold)
    cx, cy, w, h = output[:4, keep]
    return _candidates(cx, cy, w, h, best[keep], class_scores[:, keep].argmax(axis=0))


@functools.cache
def _yolox_grid(input_size: Size) -> tuple[np.ndarray, np.ndarray]:
    """Each anchor's cell (x, y) and stride, in the order YOLOX concatenates its heads."""
    width, height = input_size
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full(xs.size, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode_yolox(output: np.ndarray, input_size: Size, conf_threshold: float) -> Candidates:
    """``[N, 5+nc]``, raw head output: cell-relative xy, log wh, objectness, class scores."""
    cells, strides = _yolox_grid(input_size)
    if len(cells) != len(output):
        raise ValueError(f"YOLOX output has {len(output)} anchors; a {input_size} input has {len(cells)}")
    class_scores = output[:, 5:]
    # obj * max(cls) == max(obj * cls) since obj >= 0, and avoids an N x nc product.
    score = output[:, 4] * class_scores.max(axis=1)
    keep = np.flatnonzero(score >= conf_threshold)
    stride = strides[keep]
    cx, cy = ((output[keep, :2] + cells[keep]) * stride[:, None]).T
    w, h = (np.exp(output[keep, 2:4]) * stride[:, None]).T
    return _candidates(cx, cy, w, h, score[keep], class_scores[keep].argmax(axis=1))


def decode_fastestdet(output: np.ndarray, input_size: Size, conf_threshold: float) -> Candidates:
    """``[5+nc, H, W]``: objectness, tanh cell offsets, sigmoid w/h as image fractions, classes."""
    channels, rows, cols = output.shape
    flat = output.reshape(channels, rows * cols)
    class_scores = flat[5:]
    score = flat[0] ** 0.6 * class_scores.max(axis=0) ** 0.4
    keep = np.flatnonzero(score >= conf_threshold)
    row, col = np.divmod(keep, cols)
    width, height = input_size
    cx = (col + np.tanh(flat[1, keep])) / cols * width
    cy = (row + np.tanh(flat[2, keep])) / rows * height
    w = width / (1 + np.exp(-flat[3, keep]))
    h = height / (1 + np.exp(-flat[4, keep]))
    return _candidates(cx, cy, w, h, score[keep], class_scores[:, keep].argmax(axis=0))


DECODERS: dict[Layout, Decoder] = {
    "ultralytics": Decoder(decode_ultralytics, channel_axis=0, box_channels=4),
    "yolox": Decoder(decode_yolox, channel_axis=1, box_channels=5),
    "fastestdet": Decoder(decode_fastestdet, channel_axis=0, box_channels=5),
}
