"""Licence plates on parking cases: find and read a Chinese plate in a vehicle crop.

OCR is RapidOCR (``rapidocr-onnxruntime``: PaddleOCR's PP-OCRv4 text detector and recogniser as
ONNX, shipped inside its wheel, so it runs offline on ONNX Runtime). Every line of text it finds in
the crop is a candidate, and so is each run of neighbouring boxes on one line read together (the
detector may split a plate at its separator dot); a candidate counts as a plate only if, once
separators are dropped, it matches the pattern of a Chinese plate: a province character, the
issuing office's letter, then 5 alphanumerics (6 on green new-energy plates), the last of which may
be 挂 学 警 港 澳. The most confident plate wins.

Reading a plate is a nicety on top of a case: the reader loads lazily and fails soft, so a missing
package, a broken model or an unreadable crop give no plate, never no case.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_PATTERN = re.compile(rf"^[{PROVINCES}][A-Z][A-Z0-9]{{4,5}}[A-Z0-9挂学警港澳]$")
SEPARATORS = re.compile(r"[\s·•.\-_:：]")
# Plates never use the letters I and O after the office letter; OCR reads 1 and 0 as them.
DIGIT_LOOKALIKES = str.maketrans({"O": "0", "I": "1"})
SAME_LINE = 0.5  # boxes whose vertical centres differ by less than this share of their height share a line
# Hue bands (OpenCV's 0-179) of the plate backgrounds: yellow (large vehicles), green (new energy), blue.
COLOURS = (("yellow", 15, 35), ("green", 35, 90), ("blue", 95, 130))


@dataclass(frozen=True)
class PlateReading:
    text: str  # without separators, e.g. 鲁A12345
    confidence: float  # the OCR's mean character confidence, 0..1
    box: tuple[int, int, int, int]  # the plate in the crop's pixels, x1 y1 x2 y2
    colour: str  # blue | green | yellow | unknown (background hue of the plate)

    def to_dict(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4), "colour": self.colour}


def normalise(text: str) -> str | None:
    """``text`` as a plate without separators, or None when it is no Chinese plate."""
    compact = SEPARATORS.sub("", text).upper()
    if len(compact) < 3:
        return None
    candidate = compact[:2] + compact[2:].translate(DIGIT_LOOKALIKES)
    return candidate if PLATE_PATTERN.match(candidate) else None


class PlateReader:
    """Reads the plate in a vehicle crop (BGR). Thread-safe: one OCR engine behind a lock."""

    def __init__(self, *, threads: int = 1, detector_side: int = 480, min_confidence: float = 0.6) -> None:
        """``threads``: ONNX Runtime threads of the OCR (it runs beside the patrol's own inference);
        ``detector_side``: the text detector's input side (larger finds smaller plates, slower)."""
        self._threads = threads
        self._detector_side = detector_side
        self._min_confidence = min_confidence
        self._engine = None
        self._broken = False
        self._lock = threading.Lock()

    def read(self, crop: np.ndarray) -> PlateReading | None:
        if crop is None or crop.size == 0:
            return None
        with self._lock:
            engine = self._load()
            if engine is None:
                return None
            try:
                found, _ = engine(np.ascontiguousarray(crop))
            except Exception as exc:  # noqa: BLE001 — any OCR failure only costs the plate
                log.warning("plate OCR failed on a %dx%d crop: %s", crop.shape[1], crop.shape[0], exc)
                return None
        best = None
        for text, confidence, box in _candidates(found or []):
            plate = normalise(text)
            if plate and confidence >= self._min_confidence and (best is None or confidence > best.confidence):
                best = PlateReading(plate, confidence, box, plate_colour(crop, box))
        return best

    def _load(self):
        if self._engine is None and not self._broken:
            try:
                from rapidocr_onnxruntime import RapidOCR

                self._engine = RapidOCR(det_limit_side_len=self._detector_side, intra_op_num_threads=self._threads,
                                        inter_op_num_threads=1)
            except Exception as exc:  # noqa: BLE001 — not installed, or its models do not load
                self._broken = True
                log.warning("plate reading is off: cannot load rapidocr-onnxruntime: %s", exc)
        return self._engine


def plate_colour(crop: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """The plate's background colour: the median hue of its saturated pixels (the characters are
    white or black, so unsaturated)."""
    height, width = crop.shape[:2]
    x1, x2 = np.clip([box[0], box[2]], 0, width)
    y1, y2 = np.clip([box[1], box[3]], 0, height)
    if x2 <= x1 or y2 <= y1:
        return "unknown"
    hsv = cv2.cvtColor(crop[y1:y2, x1:x2], cv2.COLOR_BGR2HSV).reshape(-1, 3)
    saturated = hsv[(hsv[:, 1] > 80) & (hsv[:, 2] > 60)]
    if len(saturated) < 0.3 * len(hsv):
        return "unknown"
    hue = float(np.median(saturated[:, 0]))
    return next((name for name, low, high in COLOURS if low <= hue < high), "unknown")


def _candidates(found: list) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    """Each text box alone, and each left-to-right run of boxes on one line joined."""
    boxes = []
    for points, text, confidence in found:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        boxes.append((text, float(confidence), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys)))))
    boxes.sort(key=lambda b: b[2][0])
    candidates = list(boxes)
    for start, first in enumerate(boxes):
        line = [first]
        for other in boxes[start + 1:]:
            if _same_line(first[2], other[2]):
                line.append(other)
                candidates.append(_joined(line))
    return candidates


def _same_line(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    height = max(a[3] - a[1], b[3] - b[1], 1)
    return abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) < SAME_LINE * height


def _joined(line: list) -> tuple[str, float, tuple[int, int, int, int]]:
    text = "".join(t for t, _, _ in line)
    weights = [len(t) for t, _, _ in line]
    confidence = float(np.average([c for _, c, _ in line], weights=weights))
    boxes = np.array([b for _, _, b in line])
    return text, confidence, (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()),
                              int(boxes[:, 3].max()))
