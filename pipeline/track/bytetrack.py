"""ByteTrack, from the maintained `trackers` package, behind the project's Detections type."""

from __future__ import annotations

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from pipeline.types import Detections

TRACK_LOST_S = 3.0  # how long a track survives unseen by default, in stream seconds



class Tracker:
    """One per camera. Fed on stream time, so dropped or skipped frames only widen the predict step.

    ``lost_s`` is how long a track survives unseen (a bus passing in front of a parked car), in
    stream seconds however many frames that is (given timestamps, the library counts its lost
    budget in seconds); the rules bridge longer gaps themselves by matching boxes.

    ``start_score``: a detection this sure can start a track. It is the detector's own default
    threshold, not ByteTrack's usual 0.5: a parked car at dusk, in rain or at an odd angle scores
    0.25-0.45 on every frame, and with a higher bar it never gets a track, so never a case. A
    track still needs two frames in a row, and a rule its whole dwell, before anything is filed.
    Scores below it (a detector run with a lower --conf) only keep existing tracks alive.
    """

    def __init__(self, *, analysis_fps: float, lost_s: float = TRACK_LOST_S, start_score: float = 0.25,
                 min_iou: float = 0.1) -> None:
        self._tracker = ByteTrackTracker(
            # the library counts its lost buffer in 30 fps frames, whatever the frame rate
            lost_track_buffer=max(1, round(lost_s * 30)),
            frame_rate=analysis_fps,
            track_activation_threshold=start_score,
            minimum_consecutive_frames=2,
            minimum_iou_threshold=min_iou,
            high_conf_det_threshold=start_score,
        )

    def update(self, detections: Detections, pts_s: float) -> Detections:
        """The detections that belong to confirmed tracks, with ``track_id`` set."""
        tracked = self._tracker.update(
            sv.Detections(
                xyxy=detections.xyxy.astype(np.float32, copy=False),
                confidence=detections.score,
                class_id=detections.class_id,
                data={"role": detections.role},
            ),
            timestamp=pts_s,
        )
        keep = tracked.tracker_id >= 0 if len(tracked) else np.zeros(0, bool)
        if not keep.any():
            return _empty_tracks()
        return Detections(
            xyxy=tracked.xyxy[keep].astype(np.float32),
            score=tracked.confidence[keep].astype(np.float32),
            class_id=tracked.class_id[keep].astype(np.int32),
            role=np.asarray(tracked.data["role"])[keep],
            track_id=tracked.tracker_id[keep].astype(np.int64),
        )


def _empty_tracks() -> Detections:
    empty = Detections.empty()
    return Detections(empty.xyxy, empty.score, empty.class_id, empty.role, track_id=np.zeros(0, np.int64))
