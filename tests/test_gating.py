"""Motion gating: the camera setting, the gate's decisions, and how a camera pipeline uses them."""

from __future__ import annotations

import numpy as np
import pytest
from support import DEFAULT_MODEL, SAMPLE_CAMERA

from pipeline.config import ConfigError, Workspace, load_camera
from pipeline.detect import MotionGate
from pipeline.engine import CameraPipeline
from pipeline.types import Detections, Frame

# --- the camera file setting ---------------------------------------------------------------------


def camera_file(tmp_path, gating: str) -> str:
    text = SAMPLE_CAMERA.read_text().replace("url: samples/sample-street.mp4",
                                             f"url: {SAMPLE_CAMERA.parent / 'samples' / 'sample-street.mp4'}")
    path = tmp_path / "cam.yaml"
    path.write_text(text + gating)
    return str(path)


def test_gating_is_off_unless_a_camera_turns_it_on(tmp_path) -> None:
    assert load_camera(SAMPLE_CAMERA).motion_gating.enabled is False
    gating = load_camera(camera_file(tmp_path, "motion_gating: true\n")).motion_gating
    assert gating.enabled is True and gating.refresh_s == 2.0 and gating.min_changed == 0.002
    tuned = load_camera(camera_file(tmp_path, "motion_gating: {enabled: true, refresh_s: 1, min_changed: 0.01}\n"))
    assert (tuned.motion_gating.refresh_s, tuned.motion_gating.min_changed) == (1.0, 0.01)


@pytest.mark.parametrize(("setting", "complaint"), [
    ("motion_gating: {enabled: true, refresh_s: 15}", ("motion_gating.refresh_s (15) must be shorter than the "
                                                      "shortest rule dwell_s (15)")),
    ("motion_gating: {enabled: true, min_changed: 1.5}", "motion_gating.min_changed"),
    ("motion_gating: {enabled: true, refresh_s: 0}", "motion_gating.refresh_s"),
    ("motion_gating: {enable: true}", "motion_gating.enable"),
    ("motion_gating: sometimes", "motion_gating"),
])
def test_a_bad_gating_setting_is_refused_naming_it(tmp_path, setting: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="cam.yaml") as error:
        load_camera(camera_file(tmp_path, setting + "\n"))
    assert complaint in str(error.value)


def test_a_long_refresh_is_fine_while_gating_is_off(tmp_path) -> None:
    camera = load_camera(camera_file(tmp_path, "motion_gating: {enabled: false, refresh_s: 600}\n"))
    assert camera.motion_gating.enabled is False


# --- the gate ------------------------------------------------------------------------------------


def street(seed: int = 0) -> np.ndarray:
    """A 1080p grey street with sensor noise (σ 3 grey levels), new noise for each seed."""
    rng = np.random.default_rng(seed)
    image = np.full((1080, 1920, 3), 110, np.int16) + rng.normal(0, 3, (1080, 1920, 1)).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def with_car(image: np.ndarray, x: int) -> np.ndarray:
    """A dark 240x120 car (a far one, about 1.4 % of the picture) with its left edge at ``x``."""
    image = image.copy()
    image[800:920, x : x + 240] = 30
    return image


def test_noise_alone_never_runs_the_detector_again_until_the_refresh() -> None:
    gate = MotionGate(min_changed=0.002, refresh_s=2.0)
    decisions = [gate.needs_detection(street(seed), seed * 0.2) for seed in range(12)]
    # the first frame, then nothing until 2 s after it (frame 10), then nothing again
    assert decisions == [True] + [False] * 9 + [True, False]


def test_a_car_arriving_or_moving_runs_the_detector() -> None:
    gate = MotionGate(min_changed=0.002, refresh_s=60.0)
    assert gate.needs_detection(street(0), 0.0)
    assert gate.needs_detection(with_car(street(1), 300), 0.2)  # it drove in
    assert not gate.needs_detection(with_car(street(2), 300), 0.4)  # it is parked
    assert gate.needs_detection(with_car(street(3), 360), 0.6)  # it moved on by 60 px


def test_slow_change_adds_up_against_the_last_detected_frame() -> None:
    """A car creeping 4 px a frame never differs much from the frame before, but it does from the
    frame the detector last saw, so the gate opens every few frames."""
    gate = MotionGate(min_changed=0.002, refresh_s=60.0)
    base = street(0)
    decisions = [gate.needs_detection(with_car(base, 300 + 4 * step), step * 0.2) for step in range(20)]
    assert decisions[0] and 2 <= sum(decisions[1:]) <= 10


def test_a_new_resolution_runs_the_detector() -> None:
    gate = MotionGate(min_changed=0.002, refresh_s=60.0)
    assert gate.needs_detection(street(0), 0.0)
    assert gate.needs_detection(np.full((360, 640, 3), 110, np.uint8), 0.2)


KERB_ZONE = [[0.1, 0.7], [0.6, 0.7], [0.6, 0.9], [0.1, 0.9]]  # the car's row (y 800-920 of 1080), x 192-1152


def test_with_zones_only_traffic_outside_every_zone_does_not_wake_the_detector() -> None:
    gate = MotionGate(min_changed=0.002, refresh_s=60.0, zones=[KERB_ZONE])
    assert gate.needs_detection(street(0), 0.0)
    assert not gate.needs_detection(with_car(street(1), 1500), 0.2)  # passing right of the zone
    assert gate.needs_detection(with_car(street(2), 1000), 0.4)  # its front enters the zone's edge
    assert not gate.needs_detection(with_car(street(3), 1000), 0.6)  # standing there
    everywhere = MotionGate(min_changed=0.002, refresh_s=60.0)
    assert everywhere.needs_detection(street(0), 0.0)
    assert everywhere.needs_detection(with_car(street(1), 1500), 0.2)


def test_gating_counts_zone_change_only_unless_the_camera_says_otherwise(tmp_path) -> None:
    camera = load_camera(camera_file(tmp_path, "motion_gating: true\n"))
    assert camera.motion_gating.zones_only
    far_right = MotionGate.for_camera(camera)  # the sample's zones end at x 0.85
    far_right.needs_detection(street(0), 0.0)
    lane_car = street(1)
    lane_car[150:230, 1700:1900] = 30  # among the shop fronts, right of every zone
    assert not far_right.needs_detection(lane_car, 0.2)
    anywhere = load_camera(camera_file(tmp_path, "motion_gating: {enabled: true, zones_only: false}\n"))
    whole = MotionGate.for_camera(anywhere)
    whole.needs_detection(street(0), 0.0)
    assert whole.needs_detection(lane_car, 0.2)


# --- the camera pipeline -------------------------------------------------------------------------


def test_a_gated_frame_reuses_the_last_detections_and_is_counted() -> None:
    camera = load_camera(SAMPLE_CAMERA)
    gated = CameraPipeline(camera.model_copy(update={"motion_gating": camera.motion_gating.model_copy(
        update={"enabled": True})}), case_namespace="test")
    plain = CameraPipeline(camera, case_namespace="test")
    car = Detections(xyxy=np.array([[200, 420, 330, 500]], np.float32), score=np.array([0.9], np.float32),
                     class_id=np.array([0], np.int32), role=np.array(["vehicle"]))
    image = with_car(street(0), 300)[::2, ::2].copy()  # 960x540 as the sample camera
    for pipeline in (gated, plain):
        assert pipeline.needs_detection(Frame(camera.id, 0, 0.0, 0.0, image))
        pipeline.step(Frame(camera.id, 0, 0.0, 0.0, image), car)
    for seq in range(1, 6):
        frame = Frame(camera.id, seq, seq * 0.2, seq * 0.2, image)
        assert not gated.needs_detection(frame)
        assert plain.needs_detection(frame)  # without gating, every frame is detected
        gated.step(frame, None)
        plain.step(frame, car)
    assert gated.gated == 5 and plain.gated == 0
    assert gated.stats.analysed == plain.stats.analysed == 6
    # the tracker saw the same car on every gated frame: the same tracks as the detected run
    gated_tracks = gated.tracker.update(car, 1.2)
    plain_tracks = plain.tracker.update(car, 1.2)
    np.testing.assert_array_equal(gated_tracks.track_id, plain_tracks.track_id)
    np.testing.assert_allclose(gated_tracks.xyxy, plain_tracks.xyxy)


# --- the live patrol -------------------------------------------------------------------------------


def still_video(path, seconds: float = 3.0, fps: int = 15) -> str:
    """A camera looking at an empty street where nothing moves."""
    import av

    image = street(0)[::2, ::2].copy()  # 960x540
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for _ in range(int(seconds * fps)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return str(path)


@pytest.mark.realtime  # a live patrol on a file plays it at real speed
def test_a_live_patrol_reports_gated_frames_in_its_health_line_and_metrics(tmp_path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from pipeline.detect import Detector
    from pipeline.engine import Patrol, embedded_cases
    from pipeline.engine.health import PatrolCollector

    camera = load_camera(camera_file(tmp_path, "motion_gating: true\n")).model_copy(
        update={"url": still_video(tmp_path / "still.mp4")})
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    lines: list[str] = []
    try:
        patrol = Patrol([camera], Detector(DEFAULT_MODEL), cases, loop_files=False, health_every_s=0.5,
                        print_line=lines.append)
        patrol.run(duration_s=20)
    finally:
        cases.filer.close(drain_timeout_s=5)
    (report,) = patrol.report().cameras
    assert report.counters.analysed >= 10
    assert 0 < report.counters.gated < report.counters.analysed  # the first frame, and each refresh, ran the network
    assert any(" gated=" in line for line in lines)
    registry = CollectorRegistry()
    registry.register(PatrolCollector(patrol.report))
    assert f'patrol_camera_frames_gated_total{{camera="{camera.id}"}} {float(report.counters.gated)}' in \
        generate_latest(registry).decode()
