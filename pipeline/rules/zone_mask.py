"""Which boxes lie in a zone: the zone's polygon rasterised once per frame size."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import ZoneConfig


class ZoneMask:
    """Containment tests of many boxes at once against one zone."""

    def __init__(self, zone: ZoneConfig) -> None:
        self._zone = zone
        # frame size -> (mask, integral image of the mask); a camera has one or two sizes.
        self._rasters: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def bottom_centres_inside(self, xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """(N,) bool: the middle of each box's bottom edge, where a vehicle stands, is in the zone."""
        mask, _ = self._raster(frame_size)
        width, height = frame_size
        column = np.clip(np.floor((xyxy[:, 0] + xyxy[:, 2]) / 2), 0, width - 1).astype(np.intp)
        row = np.clip(np.floor(xyxy[:, 3]), 0, height - 1).astype(np.intp)
        return mask[row, column].astype(bool)

    def overlap_fractions(self, xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """(N,) float: the fraction of each box's area that lies in the zone."""
        _, integral = self._raster(frame_size)
        width, height = frame_size
        corners = np.round(xyxy).astype(np.intp)
        area = np.maximum((corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1]), 1)
        # Parts of a box beyond the frame edge count as outside the zone.
        x1, x2 = (np.clip(corners[:, i], 0, width) for i in (0, 2))
        y1, y2 = (np.clip(corners[:, i], 0, height) for i in (1, 3))
        inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
        return inside / area

    def _raster(self, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if frame_size not in self._rasters:
            width, height = frame_size
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [self._zone.polygon_px(frame_size)], 1)
            self._rasters[frame_size] = (mask, cv2.integral(mask))
        return self._rasters[frame_size]
