"""The pictures of a case: the annotated frame a reviewer reads and the close-up crop."""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.evidence.text import Color, TextRenderer
from pipeline.types import BBox

BOX_COLOR: Color = (0, 0, 255)
ZONE_COLOR: Color = (0, 255, 255)
TEXT_COLOR: Color = (255, 255, 255)
CAPTION_BACKGROUND: Color = (0, 0, 0)


def annotate(
    image: np.ndarray,
    *,
    bbox: BBox,
    zone_polygon_px: np.ndarray,
    label: str,
    caption: str,
    text: TextRenderer,
) -> np.ndarray:
    """A copy of ``image`` with the zone, the box, ``label`` on the box and ``caption`` top-left."""
    annotated = image.copy()
    height = image.shape[0]
    line_px = max(2, round(height / 360))
    text_px = max(12, round(height / 36))
    polygon = np.round(np.asarray(zone_polygon_px, np.float64)).astype(np.int32).reshape(-1, 1, 2)
    if len(polygon):  # a camera-fault picture has no zone
        cv2.polylines(annotated, [polygon], True, ZONE_COLOR, line_px, cv2.LINE_AA)
    x1, y1, x2, y2 = (round(v) for v in bbox)
    cv2.rectangle(annotated, (x1, y1), (x2, y2), BOX_COLOR, line_px)
    plate_height = text.measure(label, text_px)[1] + 2 * _plate_padding(text_px)
    # Above the box when there is room, else just inside its top edge.
    label_top = y1 - plate_height if y1 >= plate_height else y1
    _text_on_plate(annotated, label, (x1, label_top), text_px, BOX_COLOR, text)
    _text_on_plate(annotated, caption, (0, 0), text_px, CAPTION_BACKGROUND, text)
    return annotated


def crop_window(
    bbox: BBox, image_size: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    """``bbox`` grown on each side by ``margin`` times its width/height; whole pixels, clipped."""
    width, height = image_size
    x1, y1, x2, y2 = bbox
    grow_x, grow_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, math.floor(x1 - grow_x)), max(0, math.floor(y1 - grow_y))
    right, bottom = min(width, math.ceil(x2 + grow_x)), min(height, math.ceil(y2 + grow_y))
    if right <= left or bottom <= top:
        raise ValueError(f"box {bbox} lies outside the {width}x{height} frame")
    return left, top, right, bottom


def crop(image: np.ndarray, bbox: BBox, margin: float) -> np.ndarray:
    left, top, right, bottom = crop_window(bbox, (image.shape[1], image.shape[0]), margin)
    return image[top:bottom, left:right].copy()


def _text_on_plate(
    image: np.ndarray,
    content: str,
    top_left: tuple[int, int],
    text_px: int,
    background: Color,
    text: TextRenderer,
) -> None:
    """Text on a filled plate, so it stays readable on any scene."""
    pad = _plate_padding(text_px)
    width, height = text.measure(content, text_px)
    x, y = top_left
    cv2.rectangle(image, (x, y), (x + width + 2 * pad, y + height + 2 * pad), background, -1)
    text.draw(image, content, (x + pad, y + pad), text_px, TEXT_COLOR)


def _plate_padding(text_px: int) -> int:
    return max(2, text_px // 6)
