"""Track: ids persist across frames, survive short misses, and tell objects apart."""

from __future__ import annotations

import numpy as np

from pipeline.track import Tracker
from pipeline.types import Detections, Role


def boxes(*xyxy: tuple[float, float, float, float], score: float = 0.9) -> Detections:
    n = len(xyxy)
    return Detections(
        xyxy=np.array(xyxy, np.float32).reshape(n, 4),
        score=np.full(n, score, np.float32),
        class_id=np.zeros(n, np.int32),
        role=np.full(n, Role.VEHICLE.value, dtype="<U24"),
    )


def test_two_moving_cars_keep_distinct_ids():
    tracker = Tracker(analysis_fps=5)
    ids = []
    for i in range(20):
        t = i * 0.2
        out = tracker.update(boxes((10 + 20 * t, 100, 110 + 20 * t, 150), (400 - 30 * t, 300, 500 - 30 * t, 350)), t)
        ids.append({round(float(x1)): int(tid) for (x1, *_), tid in zip(out.xyxy, out.track_id)})
    settled = [sorted(frame.values()) for frame in ids[3:]]
    assert all(len(frame) == 2 for frame in settled)
    assert all(frame == settled[0] for frame in settled)  # the same two ids all along


def test_a_short_miss_keeps_the_id_and_role():
    tracker = Tracker(analysis_fps=5, lost_s=3.0)
    car = (100, 100, 200, 150)
    seen = [tracker.update(boxes(car), i * 0.2) for i in range(5)]
    first_id = int(seen[-1].track_id[0])
    for i in range(5, 12):  # 1.4 s with no detection, as when a bus passes in front
        assert len(tracker.update(Detections.empty(), i * 0.2)) == 0
    back = tracker.update(boxes(car), 12 * 0.2)
    assert int(back.track_id[0]) == first_id
    assert back.role.tolist() == ["vehicle"]


def test_a_single_frame_blip_does_not_become_a_track():
    tracker = Tracker(analysis_fps=5)
    assert len(tracker.update(boxes((0, 0, 50, 50)), 0.0)) == 0
