"""Motion in a camera's zones, and motion gating: run the detector only when the picture changed
since the last frame it saw.

A fixed street camera at night, or on a quiet side street, shows the same picture for minutes.
Re-running the network on it only re-finds the same parked cars; the gate lets the caller reuse
the last detections instead, which is what frees a CPU box for more cameras. The adaptive analysis
rate (``pipeline/engine/analysis_rate.py``) asks the same question of the zones to slow a still
camera down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from pipeline.config import CameraConfig

Polygon = Sequence[Sequence[float]]  # corners as fractions of the frame's width and height

THUMB_WIDTH = 160  # a 1080p frame becomes 160x90: each thumbnail pixel averages a 12x12 block
# Grey levels a thumbnail pixel must move by to count as changed: far above sensor and compression
# noise once blocks are averaged (about 1 level), far below a car or a stall against the road.
PIXEL_DELTA = 12
# Thumbnail pixels a zone is widened by (about 2 % of the width): an object entering a zone moves
# at its edge before its foot point is inside.
ZONE_MARGIN = 3


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey copy of a BGR frame, ``THUMB_WIDTH`` wide, each pixel a block average."""
    height, width = image.shape[:2]
    size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
    # Area averaging straight from 1080p costs ~1.6 ms; picking every few pixels first (nearest)
    # and averaging 3x3 of those costs ~0.2 ms and still smooths the noise out.
    if width > 3 * THUMB_WIDTH:
        image = cv2.resize(image, (3 * size[0], 3 * size[1]), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


class ZoneMotion:
    """Whether a camera's zones (or its whole picture) changed since a reference picture.

    Each picture is compared with the reference, not with the picture before it, so change that
    creeps in slowly (garbage piling up, dusk) adds up until it counts. Its users choose which
    pictures become the reference (``keep_last``): the motion gate the last detected one, the
    adaptive analysis rate the last analysed one.
    """

    def __init__(self, *, min_changed: float, zones: Sequence[Polygon] | None = None) -> None:
        """``zones``: count only change inside these polygons (widened by ``ZONE_MARGIN``); None:
        anywhere in the picture."""
        self.min_changed = min_changed
        self._zones = zones
        self._mask: np.ndarray | None = None  # of the zones, at the thumbnail's size
        self._reference: np.ndarray | None = None
        self._reference_shape: tuple[int, ...] = ()  # of the full frame: boxes of another size cannot be reused
        self._last: tuple[np.ndarray, tuple[int, ...]] | None = None  # the picture ``changed`` saw last

    def changed(self, image: np.ndarray) -> bool:
        """True when ``image`` differs from the reference by ``min_changed`` or more, and when there is
        no reference yet or the stream changed resolution."""
        thumb = thumbnail(image)
        self._last = thumb, image.shape
        return (
            self._reference is None
            or image.shape != self._reference_shape
            or changed_fraction(self._reference, thumb, self._zone_mask(thumb.shape)) >= self.min_changed
        )

    def keep_last(self) -> None:
        """The picture last passed to ``changed`` becomes the reference."""
        assert self._last is not None, "changed() first"
        self._reference, self._reference_shape = self._last

    def _zone_mask(self, shape: tuple[int, ...]) -> np.ndarray | None:
        if self._zones is None:
            return None
        if self._mask is None or self._mask.shape != shape:
            height, width = shape[:2]
            mask = np.zeros((height, width), np.uint8)
            for polygon in self._zones:
                corners = np.round(np.asarray(polygon, np.float64) * (width - 1, height - 1)).astype(np.int32)
                cv2.fillPoly(mask, [corners], 1)
            kernel = np.ones((2 * ZONE_MARGIN + 1, 2 * ZONE_MARGIN + 1), np.uint8)
            self._mask = cv2.dilate(mask, kernel).astype(bool)
        return self._mask


class MotionGate:
    """Says, frame by frame of one camera, whether the detector must run: when the picture changed
    since the last frame it ran on (see ``ZoneMotion``), and at least every ``refresh_s`` of stream
    time, changed or not."""

    def __init__(self, *, min_changed: float, refresh_s: float, zones: Sequence[Polygon] | None = None) -> None:
        """``zones``: count only change inside these polygons (widened by ``ZONE_MARGIN``); None:
        anywhere in the picture."""
        self.refresh_s = refresh_s
        self._motion = ZoneMotion(min_changed=min_changed, zones=zones)
        self._reference_pts_s = 0.0

    def needs_detection(self, image: np.ndarray, pts_s: float) -> bool:
        """True when the detector must run on this frame (it then becomes the reference)."""
        if self._motion.changed(image) or pts_s - self._reference_pts_s >= self.refresh_s:
            self._motion.keep_last()
            self._reference_pts_s = pts_s
            return True
        return False

    @classmethod
    def for_camera(cls, camera: CameraConfig) -> MotionGate:
        gating = camera.motion_gating
        zones = [zone.polygon for zone in camera.zones] if gating.zones_only else None
        return cls(min_changed=gating.min_changed, refresh_s=gating.refresh_s, zones=zones)


def changed_fraction(before: np.ndarray, after: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of thumbnail pixels whose grey level moved by ``PIXEL_DELTA`` or more; with ``mask``,
    only those inside it count (the share stays of the whole picture, so ``min_changed`` means the
    same amount of change either way)."""
    changed = cv2.absdiff(before, after) >= PIXEL_DELTA
    if mask is not None:
        changed &= mask
    return np.count_nonzero(changed) / before.size
