"""The adaptive analysis rate: the camera setting, slowing down on a still scene and back up on
motion, parked cars filed with their dwell on stream time, the tracker's gaps, and its figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from support import camera_file as sample_camera_file
from support import sample_camera

from pipeline.config import ConfigError, Workspace, camera_settings, load_camera
from pipeline.engine import CameraPipeline, embedded_cases, replay
from pipeline.engine.health import CameraReport, Counters, PatrolCollector, PatrolReport, Rates, health_line
from pipeline.track import Tracker
from pipeline.types import Detections, Frame

FPS = 5  # the sample camera's analysis_fps
KERB_CAR_Y = (270, 325)  # rows of a car standing in the sample's no-parking-kerb zone, in a 640x360 picture
PARKED_X = 150  # left edge of the parked car: its bottom centre lies in the kerb zone


def adaptive_camera(enabled: bool = True, **rate):
    """The sample street's camera with every dwell 6 s and the adaptive rate as given."""
    camera = sample_camera(dwell_s=6.0)
    return camera.model_copy(update={"adaptive_rate": camera.adaptive_rate.model_copy(
        update={"enabled": enabled, "still_fps": 1.0, "settle_s": 3.0, **rate})})


def street(seed: int) -> np.ndarray:
    """A 640x360 grey street with sensor noise (σ 3 grey levels), new noise for each seed."""
    rng = np.random.default_rng(seed)
    image = np.full((360, 640, 3), 110, np.int16) + rng.normal(0, 3, (360, 640, 1)).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def with_car(image: np.ndarray, x: int, rows: tuple[int, int] = KERB_CAR_Y) -> np.ndarray:
    image = image.copy()
    image[rows[0]:rows[1], x : x + 150] = 30
    return image


# --- the camera file setting ---------------------------------------------------------------------


def camera_file(tmp_path: Path, setting: str) -> Path:
    path = sample_camera_file(tmp_path / "cam.yaml")
    path.write_text(path.read_text(encoding="utf-8") + setting + "\n", encoding="utf-8")
    return path


def test_the_setting_has_documented_defaults_and_a_shorthand(tmp_path: Path) -> None:
    rate = load_camera(camera_file(tmp_path, "")).adaptive_rate
    assert (rate.enabled, rate.still_fps, rate.settle_s, rate.min_changed) == (True, 1.0, 3.0, 0.002)
    assert load_camera(camera_file(tmp_path, "adaptive_rate: false")).adaptive_rate.enabled is False
    tuned = load_camera(camera_file(tmp_path, "adaptive_rate: {still_fps: 0.5, settle_s: 5}")).adaptive_rate
    assert (tuned.enabled, tuned.still_fps, tuned.settle_s) == (True, 0.5, 5.0)


@pytest.mark.parametrize(("setting", "complaint"), [
    ("adaptive_rate: {still_fps: 0}", "adaptive_rate.still_fps"),
    ("adaptive_rate: {still_fps: 0.25}", "adaptive_rate.still_fps (0.25) is too low: two still periods (8 s) must "
                                         "fit in the shortest rule max_gap_s (5)"),
    ("adaptive_rate: {settle_s: -1}", "adaptive_rate.settle_s"),
    ("adaptive_rate: {min_changed: 1}", "adaptive_rate.min_changed"),
    ("adaptive_rate: {still: 1}", "adaptive_rate.still"),
    ("adaptive_rate: sometimes", "adaptive_rate"),
])
def test_a_bad_setting_is_refused_naming_it(tmp_path: Path, setting: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="cam.yaml") as error:
        load_camera(camera_file(tmp_path, setting))
    assert complaint in str(error.value)


def test_a_run_may_set_it_from_the_command_line_and_is_told_what_is_wrong(tmp_path: Path) -> None:
    path = camera_file(tmp_path, "")
    settings = camera_settings(["adaptive_rate=false", "motion_gating={enabled: true, refresh_s: 1}"])
    camera = load_camera(path, settings=settings)
    assert not camera.adaptive_rate.enabled and camera.motion_gating.refresh_s == 1.0
    with pytest.raises(ConfigError, match="adaptive_rate.still_fps"):
        load_camera(path, settings=camera_settings(["adaptive_rate={still_fps: -1}"]))
    with pytest.raises(ConfigError, match="--camera-setting 'adaptive_rate': expected KEY=VALUE"):
        camera_settings(["adaptive_rate"])


def test_a_slow_still_rate_is_fine_where_it_is_off_or_no_slower(tmp_path: Path) -> None:
    assert load_camera(camera_file(tmp_path, "adaptive_rate: {enabled: false, still_fps: 0.1}")).adaptive_rate
    assert CameraPipeline(sample_camera(analysis_fps=1.0), case_namespace="test").rate is None  # 1/s is its full rate


# --- slowing down and speeding up ----------------------------------------------------------------


def decisions(pipeline: CameraPipeline, images: list[np.ndarray], first: int = 0) -> list[bool]:
    return [pipeline.analyses(Frame(pipeline.camera.id, seq, seq / FPS, seq / FPS, image))
            for seq, image in enumerate(images, start=first)]


def test_a_still_scene_drops_to_the_low_rate() -> None:
    pipeline = CameraPipeline(adaptive_camera(), case_namespace="test")
    assert pipeline.analysis_fps == FPS  # nothing is known of the scene yet
    analysed = decisions(pipeline, [street(seed) for seed in range(50)])
    # the first frame and 3 s of settling after it (frames 0-15), then one frame a second
    assert [seq for seq, yes in enumerate(analysed) if yes] == [*range(16), 20, 25, 30, 35, 40, 45]
    assert pipeline.passed_over == 28
    assert pipeline.analysis_fps == 1.0


def test_motion_in_a_zone_brings_the_full_rate_back_on_its_first_frame() -> None:
    pipeline = CameraPipeline(adaptive_camera(settle_s=2.5), case_namespace="test")
    # analysed to 2.4 s, then still: a look at 3.4 s, 4.4 s ... 8.4 s (frame 42)
    decisions(pipeline, [street(seed) for seed in range(43)])
    lane_car = [with_car(street(43 + n), 400, rows=(10, 60)) for n in range(2)]  # above every zone
    assert decisions(pipeline, lane_car, first=43) == [False, False]
    assert pipeline.analysis_fps == 1.0
    # a car pulls in at 9.0 s and stands: that frame and the 2.5 s after it are analysed, then 1/s again
    parked = decisions(pipeline, [with_car(street(100 + n), PARKED_X) for n in range(25)], first=45)
    assert [seq for seq, yes in zip(range(45, 70), parked, strict=True) if yes] == [*range(45, 58), 62, 67]
    assert pipeline.analysis_fps == 1.0  # settled again


def test_without_the_adaptive_rate_every_frame_is_analysed() -> None:
    pipeline = CameraPipeline(adaptive_camera(enabled=False), case_namespace="test")
    assert all(decisions(pipeline, [street(seed) for seed in range(20)]))
    assert pipeline.rate is None and pipeline.analysis_fps == FPS and pipeline.passed_over == 0


def test_tracks_outlive_gaps_in_stream_seconds_not_frames() -> None:
    """The tracker is fed one look a second while the zones are still: a parked car keeps its track
    across such gaps, and a track unseen longer than its lost time (3 s) is gone however few
    updates that took."""
    tracker = Tracker(analysis_fps=FPS)
    car = Detections(xyxy=np.array([[150, 270, 300, 325]], np.float32), score=np.array([0.9], np.float32),
                     class_id=np.array([0], np.int32), role=np.array(["vehicle"]))
    first = [tracker.update(car, pts) for pts in (0.0, 0.2, 0.4)][-1].track_id
    for pts in (1.4, 2.4, 4.4):  # gaps of 1 and 2 still periods
        np.testing.assert_array_equal(tracker.update(car, pts).track_id, first)
    assert len(tracker.update(Detections.empty(), 8.0)) == 0
    assert len(tracker.update(car, 8.2)) == 0  # 3.8 s unseen: a new track, not confirmed on its first frame
    assert tracker.update(car, 8.4).track_id[0] != first[0]


# --- a parked car filed on stream time ------------------------------------------------------------


def street_clip(path: Path, seconds: float, *, car_from_s: float | None = None) -> Path:
    """A still street at 5 fps; with ``car_from_s``, a car pulls into the kerb zone from the right
    then (in 0.8 s) and stands there to the end."""
    empty = street(0)  # one picture throughout: the street is as still as the encoder lets it be
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for seq in range(round(seconds * FPS)):
            arrived = car_from_s is not None and seq >= car_from_s * FPS
            image = with_car(empty, max(PARKED_X, 480 - 80 * (seq - round(car_from_s * FPS)))) if arrived else empty
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path


class DarkBoxDetector:
    """A stand-in for the model: one vehicle box around the dark pixels, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls += len(images)
        return [self._boxes(image) for image in images]

    @staticmethod
    def _boxes(image: np.ndarray) -> Detections:
        rows, columns = np.nonzero(image.min(axis=2) < 70)
        if not len(rows):
            return Detections.empty()
        box = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
        return Detections(xyxy=np.array([box], np.float32), score=np.array([0.9], np.float32),
                          class_id=np.array([2], np.int32), role=np.array(["vehicle"]))


def replay_counting(video: Path, camera, out: Path) -> tuple[list[dict], int, int]:
    """The cases filed, the detector's calls and the frames passed over, replaying ``video``."""
    detector = DarkBoxDetector()
    cases = embedded_cases(Workspace(out), {"name": "stand-in", "sha256": "0" * 64})
    try:
        summary = replay(str(video), camera, detector, cases, cases_path=out / "cases.jsonl", evidence_root=None,
                         start_wall=1_772_409_600.0)
    finally:
        cases.filer.close(drain_timeout_s=10)
    return [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()], detector.calls, \
        summary.frames_passed_over


def test_a_parked_car_is_filed_alike_with_its_dwell_on_stream_time(tmp_path: Path) -> None:
    video = street_clip(tmp_path / "parking.mp4", 18.0, car_from_s=5.0)  # it stands from 6 s
    (steady,), steady_calls, steady_passed = replay_counting(video, adaptive_camera(enabled=False), tmp_path / "off")
    (adaptive,), adaptive_calls, adaptive_passed = replay_counting(video, adaptive_camera(), tmp_path / "on")
    assert (steady_calls, steady_passed) == (18 * FPS, 0)
    assert adaptive_calls + adaptive_passed == 18 * FPS and adaptive_calls < 0.6 * steady_calls
    # the arrival is motion, analysed at full rate both ways: the same first sighting, the same case id
    assert adaptive["case_id"] == steady["case_id"] and adaptive["first_seen_s"] == steady["first_seen_s"]
    assert steady["zone_id"] == "no-parking-kerb" and 5.0 < steady["first_seen_s"] <= 6.0  # once it stood
    # confirmed at the first look once the dwell is reached: at most one still period (1 s) later
    assert 0.0 <= adaptive["confirmed_s"] - steady["confirmed_s"] <= 1.0
    assert adaptive["dwell_s"] >= 6.0 and steady["dwell_s"] >= 6.0


# --- its figures -----------------------------------------------------------------------------------


@pytest.mark.realtime  # a live patrol on a file plays it at real speed
def test_a_live_patrol_drops_a_still_camera_to_the_low_rate_and_says_so(tmp_path: Path) -> None:
    from pipeline.engine import Patrol

    camera = adaptive_camera().model_copy(update={"url": str(street_clip(tmp_path / "still.mp4", 6.0))})
    detector = DarkBoxDetector()
    cases = embedded_cases(Workspace(tmp_path / "var"), {"name": "stand-in", "sha256": "0" * 64})
    lines: list[str] = []
    try:
        patrol = Patrol([camera], detector, cases, loop_files=False, health_every_s=0.5, print_line=lines.append)
        patrol.run(duration_s=20)
    finally:
        cases.filer.close(drain_timeout_s=5)
    (report,) = patrol.report().cameras
    # 3 s of settling at 5/s after the first frame, then one a second: far fewer than the 30 sampled
    assert detector.calls == report.counters.analysed < 0.75 * (report.counters.analysed + report.counters.passed_over)
    assert report.analysis_rate_fps == 1.0 and any(" rate=1/s analysed-share=" in line for line in lines)



def test_the_health_line_and_metrics_show_the_rate_and_the_share_analysed() -> None:
    report = CameraReport(
        camera_id="cam", state="live", state_since=0.0, counters=Counters(analysed=30, passed_over=90),
        rates=Rates(analysed_fps=1.0, analysed_share=0.2), lag_s=None, last_frame_wall=None, reconnects=0,
        stalls=0, corrupt=0, reconnects_last_hour=0, stalls_last_hour=0, last_error=None, analysis_rate_fps=1.0)
    assert " rate=1/s analysed-share=20%" in health_line(report)
    assert "rate=" not in health_line(replace(report, analysis_rate_fps=None))
    metrics = {family.name: family for family in PatrolCollector(lambda: PatrolReport([report], 0, 0, None)).collect()}
    assert metrics["patrol_camera_analysis_rate_fps"].samples[0].value == 1.0
    assert metrics["patrol_camera_analysed_share"].samples[0].value == 0.2
    assert metrics["patrol_camera_frames_passed_over"].samples[0].value == 90
