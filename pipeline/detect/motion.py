"""Motion gating: run the detector only when the picture changed since the last frame it saw.

A fixed street camera at night, or on a quiet side street, shows the same picture for minutes.
Re-running the network on it only re-finds the same parked cars; the gate lets the caller reuse
the last detections instead, which is what frees a CPU box for more cameras.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB_WIDTH = 160  # a 1080p frame becomes 160x90: each thumbnail pixel averages a 12x12 block
# Grey levels a thumbnail pixel must move by to count as changed: far above sensor and compression
# noise once blocks are averaged (about 1 level), far below a car or a stall against the road.
PIXEL_DELTA = 12


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey copy of a BGR frame, ``THUMB_WIDTH`` wide, each pixel a block average."""
    height, width = image.shape[:2]
    size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
    # Area averaging straight from 1080p costs ~1.6 ms; picking every few pixels first (nearest)
    # and averaging 3x3 of those costs ~0.2 ms and still smooths the noise out.
    if width > 3 * THUMB_WIDTH:
        image = cv2.resize(image, (3 * size[0], 3 * size[1]), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


class MotionGate:
    """Says, frame by frame of one camera, whether the detector must run.

    Each frame is compared with the last frame the detector ran on, not with the previous frame,
    so change that creeps in slowly (garbage piling up, dusk) adds up until it counts. The
    detector also runs at least every ``refresh_s`` of stream time, changed or not.
    """

    def __init__(self, *, min_changed: float, refresh_s: float) -> None:
        self.min_changed = min_changed
        self.refresh_s = refresh_s
        self._reference: np.ndarray | None = None
        self._reference_shape: tuple[int, ...] = ()  # of the full frame: boxes of another size cannot be reused
        self._reference_pts_s = 0.0

    def needs_detection(self, image: np.ndarray, pts_s: float) -> bool:
        """True when the detector must run on this frame (it then becomes the reference)."""
        thumb = thumbnail(image)
        if (
            self._reference is None
            or image.shape != self._reference_shape  # the stream changed resolution
            or pts_s - self._reference_pts_s >= self.refresh_s
            or changed_fraction(self._reference, thumb) >= self.min_changed
        ):
            self._reference, self._reference_shape, self._reference_pts_s = thumb, image.shape, pts_s
            return True
        return False


def changed_fraction(before: np.ndarray, after: np.ndarray) -> float:
    """Share of thumbnail pixels whose grey level moved by ``PIXEL_DELTA`` or more."""
    return np.count_nonzero(cv2.absdiff(before, after) >= PIXEL_DELTA) / before.size
