"""Fitting a frame into the network input, and mapping boxes back out of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.detect.card import ResizeMode

Size = tuple[int, int]  # (width, height) in pixels


def rectangular_input_size(frame_size: Size, long_side: int, stride: int) -> Size:
    """The smallest stride-multiple input that holds the frame scaled to ``long_side``:
    a 1920x1080 frame at 640 needs 640x384, not 640x640, so no compute is spent on padding."""
    width, height = frame_size
    ratio = long_side / max(width, height)
    return (
        math.ceil(round(width * ratio) / stride) * stride,
        math.ceil(round(height * ratio) / stride) * stride,
    )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a frame lands in the input: resized to ``resized`` and pasted at ``offset``."""

    frame_size: Size
    resized: Size
    offset: Size  # (x, y) of the resized frame's top-left corner in the input

    @property
    def scale(self) -> tuple[float, float]:
        # Per axis, because rounding the resized size (or stretching) makes x and y differ.
        return self.resized[0] / self.frame_size[0], self.resized[1] / self.frame_size[1]

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Input-pixel boxes to frame pixels, clipped to the frame."""
        sx, sy = self.scale
        dx, dy = self.offset
        width, height = self.frame_size
        boxes = (xyxy - np.array([dx, dy, dx, dy], np.float32)) / np.array([sx, sy, sx, sy], np.float32)
        return np.clip(boxes, 0, np.array([width, height, width, height], np.float32)).astype(np.float32)


def place(frame_size: Size, input_size: Size, mode: ResizeMode) -> Placement:
    width, height = frame_size
    input_w, input_h = input_size
    if mode == "stretch":
        return Placement(frame_size, input_size, (0, 0))
    ratio = min(input_w / width, input_h / height)
    resized = (min(input_w, round(width * ratio)), min(input_h, round(height * ratio)))
    if mode == "letterbox_top_left":
        return Placement(frame_size, resized, (0, 0))
    return Placement(frame_size, resized, ((input_w - resized[0]) // 2, (input_h - resized[1]) // 2))


def paste(image: np.ndarray, placement: Placement, canvas: np.ndarray, pad_value: int) -> None:
    """Draw ``image`` into ``canvas`` (input H x W x 3, uint8) as ``placement`` says.

    The frame is resized straight into its place in the canvas (no intermediate picture) and only
    the padding around it is painted.
    """
    x, y = placement.offset
    w, h = placement.resized
    canvas[:y] = pad_value
    canvas[y + h :] = pad_value
    canvas[y : y + h, :x] = pad_value
    canvas[y : y + h, x + w :] = pad_value
    # INTER_LINEAR because that is what the detectors we use were trained with.
    cv2.resize(image, (w, h), dst=canvas[y : y + h, x : x + w], interpolation=cv2.INTER_LINEAR)
