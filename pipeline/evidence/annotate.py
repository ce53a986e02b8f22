"""The pictures of a case: the annotated frame a reviewer reads and the close-up crop."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.evidence.text import Color, TextRenderer
from pipeline.types import BBox

BOX_COLOR: Color = (0, 0, 255)
ZONE_COLOR: Color = (0, 255, 255)
CASE_BOX_COLOR: Color = (160, 160, 160)  # where a rechecked case's violation stood
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
    annotated, line_px, text_px = _with_zone(image, zone_polygon_px)
    _labelled_box(annotated, bbox, label, line_px, text_px, text)
    _text_on_plate(annotated, caption, (0, 0), text_px, CAPTION_BACKGROUND, text)
    return annotated


def annotate_recheck(
    image: np.ndarray,
    *,
    case_bbox: BBox,
    found: Sequence[tuple[BBox, str]],
    zone_polygon_px: np.ndarray,
    caption: str,
    text: TextRenderer,
) -> np.ndarray:
    """The after-photo of a recheck (摄像头复核): a copy of ``image`` with the zone, the case's own box
    dashed in grey (where the violation was), each box ``found`` now with its label, and ``caption``."""
    annotated, line_px, text_px = _with_zone(image, zone_polygon_px)
    _dashed_rectangle(annotated, case_bbox, CASE_BOX_COLOR, line_px)
    for bbox, label in found:
        _labelled_box(annotated, bbox, label, line_px, text_px, text)
    _text_on_plate(annotated, caption, (0, 0), text_px, CAPTION_BACKGROUND, text)
    return annotated


def _with_zone(image: np.ndarray, zone_polygon_px: np.ndarray) -> tuple[np.ndarray, int, int]:
    """A copy of ``image`` with the zone drawn, and the line and text heights in pixels that suit its size."""
    annotated = image.copy()
    height = image.shape[0]
    line_px = max(2, round(height / 360))
    text_px = max(12, round(height / 36))
    polygon = np.round(np.asarray(zone_polygon_px, np.float64)).astype(np.int32).reshape(-1, 1, 2)
    if len(polygon):  # a camera-fault picture has no zone
        cv2.polylines(annotated, [polygon], True, ZONE_COLOR, line_px, cv2.LINE_AA)
    return annotated, line_px, text_px


def _labelled_box(image: np.ndarray, bbox: BBox, label: str, line_px: int, text_px: int, text: TextRenderer) -> None:
    x1, y1, x2, y2 = (round(v) for v in bbox)
    cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOR, line_px)
    plate_height = text.measure(label, text_px)[1] + 2 * _plate_padding(text_px)
    # Above the box when there is room, else just inside its top edge.
    label_top = y1 - plate_height if y1 >= plate_height else y1
    _text_on_plate(image, label, (x1, label_top), text_px, BOX_COLOR, text)


def _dashed_rectangle(image: np.ndarray, bbox: BBox, color: Color, line_px: int) -> None:
    x1, y1, x2, y2 = (round(v) for v in bbox)
    dash = 4 * line_px
    for x in range(x1, x2, 2 * dash):  # top and bottom
        for y in (y1, y2):
            cv2.line(image, (x, y), (min(x + dash, x2), y), color, line_px)
    for y in range(y1, y2, 2 * dash):  # left and right
        for x in (x1, x2):
            cv2.line(image, (x, y), (x, min(y + dash, y2)), color, line_px)


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
