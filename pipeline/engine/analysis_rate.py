"""The adaptive analysis rate: a camera is analysed at full rate while its zones move, slowly while they are still.

A car parked for minutes, a stall or a heap of bins needs one look a second to have its dwell
measured; five looks a second only re-find it. The decision is taken before detection, in frame
order, from the picture alone (motion inside the zones), so a replay decides the same on every run
however far its network runs ahead of tracking, and the live patrol can drop a frame before it
joins a batch. What tracks would add (a newcomer, a mover) shows as motion first: the rate stays
full for ``settle_s`` after the last motion, long enough for the tracker to confirm what arrived.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import CameraConfig
from pipeline.detect import ZoneMotion


class AnalysisRate:
    """Says, frame by frame of one camera (every frame sampled at its ``analysis_fps``, in order),
    whether the frame is analysed at all."""

    def __init__(self, *, full_fps: float, still_fps: float, settle_s: float, motion: ZoneMotion) -> None:
        self.full_fps = full_fps
        self.still_fps = still_fps
        self.settle_s = settle_s
        self._motion = motion
        self._moving_until_s = float("-inf")
        self._moving = True  # nothing is known of the scene before its first frame
        self._next_look_s = float("-inf")  # the next frame due at the still rate

    @classmethod
    def for_camera(cls, camera: CameraConfig) -> AnalysisRate | None:
        """The camera's rate, or None where it is analysed at full rate throughout (off, or no slower)."""
        rate = camera.adaptive_rate
        if not rate.enabled or rate.still_fps >= camera.analysis_fps:
            return None
        motion = ZoneMotion(min_changed=rate.min_changed, zones=[zone.polygon for zone in camera.zones])
        return cls(full_fps=camera.analysis_fps, still_fps=rate.still_fps, settle_s=rate.settle_s, motion=motion)

    @property
    def still_period_s(self) -> float:
        return 1 / self.still_fps

    @property
    def fps(self) -> float:
        """The rate the camera is analysed at now: full while its zones move or settle, else still."""
        return self.full_fps if self._moving else self.still_fps

    def analyses(self, image: np.ndarray, pts_s: float) -> bool:
        """True when this frame is to be analysed (it then becomes the one motion is compared with)."""
        if self._motion.changed(image):  # the first frame too, and a new resolution
            self._moving_until_s = pts_s + self.settle_s
        self._moving = pts_s <= self._moving_until_s
        # Half a full-rate frame of slack: sampled pts are not exact multiples of the still period.
        if not (self._moving or pts_s >= self._next_look_s - 0.5 / self.full_fps):
            return False
        self._motion.keep_last()
        self._next_look_s = pts_s + self.still_period_s
        return True
