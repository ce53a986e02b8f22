"""A camera with ``detect_url``: its sub-stream analysed, its main stream recorded and decoded only
around a case (issue 17 item 1).

The clocks of the two inputs reconciled from the arrival of their packets, per connection; boxes
scaled from sub-stream to main-stream pixels; a case's pictures and clip from the main stream, from
the sub-stream (and said so) when the main stream holds nothing of its moment; a camera without
``detect_url`` files what it filed before, byte for byte. The same against the real RTSP server:
``test_rtsp_sub_main.py``.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from queue_contract import make_record
from review_support import PASSWORD, login, running_app
from sub_main_support import MAIN_SIZE, SUB_SIZE, Positions, sub_main_pair
from support import DEFAULT_MODEL, PATROL, REPO, START, camera_file, free_port, sample_camera, wait_for

from pipeline.cli.main import main
from pipeline.config import ConfigError, Workspace, load_camera
from pipeline.engine import embedded_cases, replay
from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.engine.health import (
    CameraReport,
    Counters,
    InputReport,
    PatrolCollector,
    PatrolReport,
    Rates,
    health_line,
)
from pipeline.engine.recheck import Rechecker
from pipeline.evidence import EvidenceRenderer, load_event_codes
from pipeline.evidence.main_frame import scale_box
from pipeline.ingest import DualRing, SourceStats, SubMainSource, decode
from pipeline.ingest.clock import ArrivalClock, ClockOffset, offset_at
from pipeline.ingest.main_stream import record
from pipeline.queue import SqliteCaseQueue
from pipeline.types import CaseRecord, Violation

GROUND_TRUTH_BOX = (132.6, 385.8, 289.8, 459.0)  # the first parked car in the sample's 960x540 pixels


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return sub_main_pair(tmp_path_factory.mktemp("pair"))


def parking_camera(**updates):
    """The sample camera watching only its kerb, 5 s dwell: the cut's parked car is its one case."""
    camera = sample_camera(dwell_s=5.0, **updates)
    return camera.model_copy(update={"zones": [z for z in camera.zones if z.id == "no-parking-kerb"]})


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---- the camera file ----


def test_detect_url_is_read_like_url_checked_against_it_and_described(tmp_path: Path) -> None:
    camera = load_camera(camera_file(tmp_path / "cam.yaml", url="main.mp4", detect_url="sub.mp4"))
    assert camera.detect_url == str(tmp_path / "sub.mp4")  # relative to the camera file, as url
    assert camera.analysed_url == camera.detect_url
    assert load_camera(camera_file(tmp_path / "one.yaml")).analysed_url.endswith("sample-street.mp4")
    with pytest.raises(ConfigError, match="both be streams or both be video files"):
        load_camera(camera_file(tmp_path / "mixed.yaml", detect_url="rtsp://user:secret@cam/Streaming/Channels/102"))
    with pytest.raises(ConfigError, match="same as url"):
        load_camera(camera_file(tmp_path / "same.yaml", url="rtsp://cam/1", detect_url="rtsp://cam/1"))
    description = type(camera).model_json_schema()["properties"]["detect_url"]["description"]
    assert "sub-stream" in description and "Zones are fractions" in description


def test_neither_input_prints_its_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: both inputs fail to connect, and say why
    camera = parking_camera(url=f"rtsp://admin:main-secret@127.0.0.1:{port}/101",
                            detect_url=f"rtsp://admin:sub-secret@127.0.0.1:{port}/102",
                            ingest={"open_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5})
    stop = threading.Event()
    source = SubMainSource(camera, DualRing(arrival=True), SourceStats(), loop_files=False, wake=threading.Event(),
                           stop=stop)
    source.start()
    try:
        wait_for(lambda: source.last_error and source.main.last_error, 10, "both inputs failing")
    finally:
        stop.set()
        source.join(10)
    assert "/102" in source.last_error and "/101" in source.main.last_error
    for text in (source.last_error, source.main.last_error):
        assert "secret" not in text and "admin:***@" in text
    assert source.state == "stopped" and source.main.state == "stopped"


# ---- the clocks ----


def arrivals(clock: ArrivalClock, *, scene_from: float, scene_to: float, stream_minus_scene: float,
             delay_s: float, rng: random.Random, wall_of_scene: float = 1000.0) -> None:
    """Packets of scene moments [scene_from, scene_to) at 15 a second, each arriving ``delay_s`` plus
    random jitter (up to a few hundred ms) after it was shown."""
    for i in range(int((scene_to - scene_from) * 15)):
        scene = scene_from + i / 15
        clock.observe(scene + stream_minus_scene, wall_of_scene + scene + delay_s + rng.expovariate(1 / 0.05))


def test_the_offset_comes_from_the_quickest_packets_of_each_input() -> None:
    sub, main = ArrivalClock(arrival=True), ArrivalClock(arrival=True)
    rng = random.Random(0)
    # the sub-stream was joined at scene time 3 (its clock reads scene - 3), the main stream at 5.5
    arrivals(sub, scene_from=3, scene_to=40, stream_minus_scene=-3, delay_s=0.020, rng=rng)
    arrivals(main, scene_from=5.5, scene_to=40, stream_minus_scene=-5.5, delay_s=0.030, rng=rng)
    offset = offset_at(sub, main, 20.0)
    # truth: main = sub - 2.5; the estimate is late by the main stream's extra 10 ms of delay at most
    assert offset.main_minus_sub_s == pytest.approx(-2.5 - 0.010, abs=0.005)
    assert offset.to_sub(offset.to_main(12.0)) == pytest.approx(12.0)
    assert offset_at(sub, main, 0.0) is None  # scene 3: the main stream was joined only at 5.5


def test_a_moment_the_main_stream_was_down_maps_to_nothing_and_its_reconnect_is_estimated_afresh() -> None:
    sub, main = ArrivalClock(arrival=True), ArrivalClock(arrival=True)
    rng = random.Random(1)
    arrivals(sub, scene_from=0, scene_to=60, stream_minus_scene=0.0, delay_s=0.02, rng=rng)
    arrivals(main, scene_from=0, scene_to=20, stream_minus_scene=0.4, delay_s=0.02, rng=rng)
    main.reconnected()  # down from scene 20 to 30; its clock goes on one second past the last time placed
    arrivals(main, scene_from=30, scene_to=60, stream_minus_scene=20.4 + 1.0 - 30, delay_s=0.02, rng=rng)
    assert main.epochs == 2
    assert offset_at(sub, main, 10.0).main_minus_sub_s == pytest.approx(0.4, abs=0.01)
    assert offset_at(sub, main, 25.0) is None  # the main stream was down then
    assert offset_at(sub, main, 45.0).main_minus_sub_s == pytest.approx(20.4 + 1.0 - 30, abs=0.01)


def test_a_sub_stream_reconnect_starts_its_own_epoch() -> None:
    sub, main = ArrivalClock(arrival=True), ArrivalClock(arrival=True)
    rng = random.Random(2)
    arrivals(main, scene_from=0, scene_to=60, stream_minus_scene=0.0, delay_s=0.02, rng=rng)
    arrivals(sub, scene_from=0, scene_to=20, stream_minus_scene=0.0, delay_s=0.02, rng=rng)
    sub.reconnected()  # down from scene 20 to 27; its clock resumes at 21 (the last time + 1 s)
    arrivals(sub, scene_from=27, scene_to=60, stream_minus_scene=-6.0, delay_s=0.02, rng=rng)
    assert offset_at(sub, main, 10.0).main_minus_sub_s == pytest.approx(0.0, abs=0.01)
    assert offset_at(sub, main, 30.0).main_minus_sub_s == pytest.approx(6.0, abs=0.01)  # scene 36


# Display indexes in decoding order, and how many frames decoding runs ahead of display: x264 at
# bf=2 (I0 P3 B1 B2 P6 B4 B5 ...) and with a B-pyramid at bf=3 (I0 P4 B2 b1 b3 P8 B6 b5 b7 ...).
B_FRAMES_2 = ([0] + [i for g in range(1, 30) for i in (3 * g, 3 * g - 2, 3 * g - 1)], 1)
B_PYRAMID_3 = ([0] + [i for g in range(1, 23) for i in (4 * g, 4 * g - 2, 4 * g - 3, 4 * g - 1)], 2)


def sent_in_decoding_order(ring, gop: tuple[list[int], int], now: list[float], *, joined_wall: float) -> float:
    """A live server's packets of the scene at 15 frames a second in ``gop``'s order, each sent when
    its decoding time comes and arriving 20 ms later, added to ``ring`` at that wall time (``now``)
    with the stream times ingest gives them (from the first packet's decoding time); the stream
    time of scene moment 0."""
    order, ahead = gop
    first_dts = -ahead / 15
    for position, shown in enumerate(order):
        dts = (position - ahead) / 15
        now[0] = joined_wall + dts + 0.020
        ring.add(b"frame", pts_s=shown / 15 - first_dts, dts_s=dts - first_dts, keyframe=shown == 0, params=None)
    return -first_dts


def test_inputs_with_different_b_frame_depths_are_reconciled_to_the_same_moment(monkeypatch) -> None:
    import pipeline.ingest.dual as dual

    now = [0.0]
    monkeypatch.setattr(dual, "time", type("FakeTime", (), {"time": staticmethod(lambda: now[0])}))
    ring = DualRing(arrival=True)
    # one scene served live on both mounts; each reorders frames to its own depth
    sub_zero = sent_in_decoding_order(ring.sub, B_FRAMES_2, now, joined_wall=1000.0)
    main_zero = sent_in_decoding_order(ring.main, B_PYRAMID_3, now, joined_wall=1000.0)
    # a sub-stream frame of scene moment 2.0 s is the main stream's frame of 2.0 s: not one shown
    # earlier or later for being sent ahead of its showing
    assert ring.offset(sub_zero + 2.0).to_main(sub_zero + 2.0) == pytest.approx(main_zero + 2.0, abs=1e-6)


def test_files_start_together_whenever_they_are_read() -> None:
    sub, main = ArrivalClock(arrival=False), ArrivalClock(arrival=False)
    for i in range(100):
        sub.observe(i / 15, wall=5000.0 + i)  # read slowly...
        main.observe(i / 15, wall=10.0 + i / 100)  # ...and fast: the walls say nothing of the scene
    assert offset_at(sub, main, 3.0) == ClockOffset(0.0)


# ---- boxes, pictures, fallback ----


def test_boxes_scale_with_each_axis_of_the_resolutions() -> None:
    assert scale_box((10, 20, 30, 40), (1.5, 1.5)) == (15.0, 30.0, 45.0, 60.0)
    # a 704x576 sub-stream of a 1920x1080 main stream is stretched: each axis on its own
    assert scale_box((0, 0, 704, 576), (1920 / 704, 1080 / 576)) == pytest.approx((0, 0, 1920, 1080))


def recorded(pair, *, main_until_s: float | None = None, main_ring_s: float = 30.0
             ) -> tuple[DualRing, dict[float, object]]:
    """Both files read into a DualRing (the main stream only demuxed, up to ``main_until_s``, its
    ring holding ``main_ring_s``), and the sub-stream's analysis frames by time."""
    main, sub = pair
    ring = DualRing(arrival=False)
    ring.main.seconds = main_ring_s
    stop = threading.Event()
    for pts in record(str(main), camera_id="cam", ring=ring.main, stop=stop):
        if main_until_s is not None and pts > main_until_s:
            stop.set()
    frames = {round(f.pts_s, 3): f for f in decode(str(sub), camera_id="cam", analysis_fps=5, ring=ring.sub)}
    return ring, frames


def test_the_main_picture_of_a_moment_is_that_moment(pair) -> None:
    ring, frames = recorded(pair)
    positions = Positions(pair[0])
    for at in (0.0, 3.4, 7.0, 12.2, 17.0):
        frame = frames[at]
        picture = ring.picture(at)
        assert picture.size == MAIN_SIZE and frame.size == SUB_SIZE
        assert picture.sub_s == pytest.approx(at, abs=1e-3)
        assert positions.of(picture.image)[0] == pytest.approx(positions.of(frame.image)[0], abs=1e-3)
    clip, source = ring.cut(2.0, 9.0, at_s=7.0)
    assert source == "main" and first_picture_size(clip) == MAIN_SIZE


def first_picture_size(clip: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(clip)) as container:
        picture = next(container.decode(video=0))
        return picture.width, picture.height


def violation_at(frames: dict, first_s: float, confirmed_s: float, camera_id: str) -> Violation:
    box = tuple(v / 1.5 for v in GROUND_TRUTH_BOX)
    return Violation("P-0123456789abcdef", "illegal_parking", camera_id, "no-parking-kerb", 7, "vehicle", first_s,
                     confirmed_s, box, 0.9, frames[first_s], box, frames[confirmed_s], frames[first_s + 1.0], box)


def render(tmp_path: Path, camera, ring, violation: Violation):
    pipeline = CameraPipeline(camera, "test")
    if ring is not None:
        pipeline.ring = ring
    maker = CaseMaker(EvidenceRenderer(load_event_codes(None), "test"), filer=None, model={"name": "m", "sha256": "0"})
    return maker.render(pipeline, violation)


def test_a_case_is_shown_in_main_stream_pixels(pair, tmp_path: Path) -> None:
    camera = parking_camera()
    ring, frames = recorded(pair)
    case = render(tmp_path, camera, ring, violation_at(frames, 2.0, 7.0, camera.id))
    record = case.record
    assert record.evidence_stream == "main"
    assert record.bbox == pytest.approx(GROUND_TRUTH_BOX)  # the sub-stream's box, scaled by 1.5
    meta = json.loads(case.files[record.evidence["metadata.json"].key])
    streams = meta["streams"]
    assert streams["photos"] == "main" and streams["clip"] == "main" and streams["size"] == list(MAIN_SIZE)
    assert streams["sub_size"] == list(SUB_SIZE) and streams["clock_offset_s"] == 0.0
    assert set(streams["pictures"].values()) == {"main"}
    assert meta["first_bbox"] == pytest.approx(list(GROUND_TRUTH_BOX))
    assert meta["zone_polygon_px"][0] == pytest.approx([0.08 * 960, 0.76 * 540], abs=0.5)
    for name in ("frame.jpg", "annotated.jpg", "first_seen.jpg"):
        assert jpeg_size(case, name) == MAIN_SIZE
    assert jpeg_size(case, "crop.jpg")[0] > 157  # wider than the car: from the 960-wide picture
    assert first_picture_size(case.files[record.evidence["clip.mp4"].key]) == MAIN_SIZE
    assert CaseRecord.from_dict(record.to_dict()) == record


def jpeg_size(case, name: str) -> tuple[int, int]:
    import cv2

    image = cv2.imdecode(np.frombuffer(case.files[case.record.evidence[name].key], np.uint8), cv2.IMREAD_COLOR)
    return image.shape[1], image.shape[0]


def test_a_main_stream_down_at_the_confirmation_gives_sub_stream_evidence_and_says_so(pair, tmp_path: Path) -> None:
    camera = parking_camera()
    ring, frames = recorded(pair, main_until_s=5.0)  # the main stream ended 5 s in
    case = render(tmp_path, camera, ring, violation_at(frames, 2.0, 12.0, camera.id))
    assert case.record.evidence_stream == "sub"
    assert case.record.bbox == pytest.approx(tuple(v / 1.5 for v in GROUND_TRUTH_BOX))
    meta = json.loads(case.files[case.record.evidence["metadata.json"].key])
    assert meta["evidence_stream"] == "sub" and meta["streams"]["photos"] == "sub"
    assert meta["streams"]["clip"] == "sub" and "main stream" in meta["streams"]["reason"]
    assert jpeg_size(case, "frame.jpg") == SUB_SIZE
    assert first_picture_size(case.files[case.record.evidence["clip.mp4"].key]) == SUB_SIZE


def test_a_first_sighting_older_than_the_main_ring_is_the_sub_picture_upscaled(pair, tmp_path: Path) -> None:
    camera = parking_camera()
    ring, frames = recorded(pair, main_ring_s=4.0)  # by the end, the main ring holds its last 4 s
    case = render(tmp_path, camera, ring, violation_at(frames, 2.0, 17.0, camera.id))
    meta = json.loads(case.files[case.record.evidence["metadata.json"].key])
    assert case.record.evidence_stream == "main"
    assert meta["streams"]["pictures"]["first_seen.jpg"] == "sub, upscaled"
    assert jpeg_size(case, "first_seen.jpg") == MAIN_SIZE


def test_a_camera_without_detect_url_files_what_it_filed_before(pair, tmp_path: Path) -> None:
    camera = parking_camera()
    ring, frames = recorded(pair)
    violation = violation_at(frames, 2.0, 7.0, camera.id)
    case = render(tmp_path, camera, None, violation)  # the camera's own PacketRing: one stream
    data = case.record.to_dict()
    assert "evidence_stream" not in data and case.record.evidence_stream is None
    meta = json.loads(case.files[case.record.evidence["metadata.json"].key])
    assert "streams" not in meta and "evidence_stream" not in meta
    assert CaseRecord.from_dict(data).to_dict() == data
    assert jpeg_size(case, "frame.jpg") == SUB_SIZE


# ---- replay of two files, the CLI, health ----


def test_replay_of_two_files_files_the_parked_car_once_in_main_stream_resolution(pair, detector,
                                                                                   tmp_path: Path) -> None:
    main, sub = pair
    camera = parking_camera()
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    try:
        summary = replay(str(main), camera, detector, cases, cases_path=tmp_path / "cases.jsonl",
                         evidence_root=Workspace(tmp_path).evidence, start_wall=START, detect_video=str(sub))
    finally:
        assert cases.filer.close(drain_timeout_s=30) == 0
    lines = [json.loads(line) for line in (tmp_path / "cases.jsonl").read_text().splitlines()]
    assert summary.cases == 1 and [c["violation"] for c in lines] == ["illegal_parking"]
    (case,) = lines
    assert iou(case["bbox"], GROUND_TRUTH_BOX) >= 0.8, case["bbox"]
    meta = json.loads(Path(case["evidence"]["metadata.json"]).read_text())
    assert meta["evidence_stream"] == "main" and meta["streams"]["size"] == list(MAIN_SIZE)
    assert first_picture_size(Path(case["evidence"]["clip.mp4"]).read_bytes()) == MAIN_SIZE
    assert summary.frames_decoded == 272  # the sub-stream's pictures: the main stream is never decoded whole


def test_patrol_replay_takes_the_sub_stream_file(pair, tmp_path: Path) -> None:
    main, sub = pair
    cam = camera_file(tmp_path / "cam.yaml", url=str(main), detect_url=str(tmp_path / "missing.mp4"))
    done = subprocess.run([*PATROL, "replay", str(main), "--camera", str(cam), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "detect_url: video file not found" in done.stderr


def test_patrol_shadow_analyses_the_sub_stream_with_both_models_and_files_from_the_main_stream(pair, tmp_path):
    main_file, sub = pair
    cam = camera_file(tmp_path / "cam.yaml", dwell_s=5.0, url=str(main_file), detect_url=str(sub))
    out = tmp_path / "out"
    assert main(["shadow", str(main_file), "--camera", str(cam), "--candidate", str(DEFAULT_MODEL),
                 "--out", str(out)]) == 0
    report = json.loads((out / "shadow.json").read_text(encoding="utf-8"))
    cases = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert sorted(case["violation"] for case in cases) == ["illegal_parking", "stall_encroachment"]
    # the same model on the same frames: every case paired, the candidate's boxes scaled to the main stream's
    assert report["counts"] == {"both": 2, "live_only": 0, "candidate_only": 0}
    for case in cases:
        meta = json.loads(Path(case["evidence"]["metadata.json"]).read_text())
        assert meta["evidence_stream"] == "main" and meta["streams"]["sub_size"] == list(SUB_SIZE)


def test_the_health_line_and_metrics_show_each_input() -> None:
    inputs = (InputReport("sub", "live", 1.0, 15.0, 0, 0, None),
              InputReport("main", "offline", 2.0, 0.0, 2, 0, "camera c: main stream broke"))
    report = CameraReport("c", "live", 0.0, Counters(), Rates(), 0.1, None, 0, 0, 0, 0, 0, None,
                          inputs=inputs, clock_offset_s=0.0123)
    line = health_line(report)
    assert " sub=live main=offline main-in=0.0/s main-reconnects=2 clock=+0.012s" in line
    assert line.endswith(" main-error: camera c: main stream broke")
    assert "sub=" not in health_line(CameraReport("c", "live", 0.0, Counters(), Rates(), 0.1, None, 0, 0, 0, 0, 0,
                                                  None))
    metrics = {m.name: m for m in PatrolCollector(lambda: PatrolReport([report], 0, 0, None)).collect()}
    states = {(s.labels["input"], s.labels["state"]): s.value for s in metrics["patrol_camera_input_state"].samples}
    assert states[("main", "offline")] == 1 and states[("main", "live")] == 0 and states[("sub", "live")] == 1
    assert [s.value for s in metrics["patrol_camera_clock_offset_seconds"].samples] == [0.0123]
    reconnects = {s.labels["input"]: s.value for s in metrics["patrol_camera_input_reconnects"].samples
                  if s.name.endswith("_total")}
    assert reconnects == {"sub": 0, "main": 2}


def test_a_replay_without_detect_url_decodes_and_records_one_input(pair, detector, tmp_path: Path) -> None:
    main, _ = pair
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    try:
        replay(str(main), parking_camera(), detector, cases, cases_path=tmp_path / "cases.jsonl",
               evidence_root=Workspace(tmp_path).evidence, start_wall=START)
    finally:
        cases.filer.close(drain_timeout_s=30)
    (case,) = [json.loads(line) for line in (tmp_path / "cases.jsonl").read_text().splitlines()]
    meta = json.loads(Path(case["evidence"]["metadata.json"]).read_text())
    assert "evidence_stream" not in meta and "streams" not in meta


def test_a_recheck_looks_through_the_stream_whose_pixels_the_case_box_is_in(tmp_path: Path, detector) -> None:
    main, sub = sub_main_pair(tmp_path, start_s=30.0, seconds=2.0)  # the car parked at the kerb
    rechecker = Rechecker([parking_camera(url=str(main), detect_url=str(sub))], detector)
    filed = replace(make_record(0), camera_id="shuangshan-sample", zone_id="no-parking-kerb",
                    violation="illegal_parking")
    on_main = replace(filed, bbox=GROUND_TRUTH_BOX, evidence_stream="main")
    on_sub = replace(filed, bbox=tuple(v / 1.5 for v in GROUND_TRUTH_BOX), evidence_stream="sub")  # main was down
    for case in (on_main, on_sub):
        result = rechecker.look(case)
        assert result.finding is not None and result.finding.still_present, (case.evidence_stream, result)


# ---- what the officer's page says of it ----


def test_the_case_page_says_which_stream_the_photos_are_from_and_when_the_clip_was_cut_short(street_var):
    """Copies of the street's first parked car as a sub+main camera files them: photos from the main
    stream; from the sub-stream while the main stream was down; a clip whose post-roll a stopped
    worker cut short (``clip_until_s``)."""
    queue = SqliteCaseQueue(street_var / "queue" / "cases.sqlite3")
    try:
        replayed = [json.loads(line)["case_id"] for line in (street_var / "cases.jsonl").read_text().splitlines()]
        first = next(case for case in map(queue.get, replayed) if case.violation == "illegal_parking")
        on_main, on_sub = "P-a000000000000011", "P-a000000000000012"
        assert queue.publish(replace(first, case_id=on_main, evidence_stream="main",
                                     clip_until_s=first.confirmed_s + 1.5))
        assert queue.publish(replace(first, case_id=on_sub, evidence_stream="sub"))
    finally:
        queue.close()
    with running_app(street_var) as client:
        headers = login(client, "officer1")
        shown = {case_id: client.get(f"/api/cases/{case_id}", headers=headers).json()
                 for case_id in (first.case_id, on_main, on_sub)}
        assert [(shown[c]["evidence_stream"], shown[c]["clip_short_s"]) for c in (first.case_id, on_main, on_sub)] \
            == [(None, None), ("main", 1.5), ("sub", None)]
        assert client.post("/login", data={"name": "officer1", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
        pages = {case_id: client.get(f"/cases/{case_id}").text for case_id in shown}
    assert "图片取自摄像头主码流（高清）" in pages[on_main] and "视频片段不完整：只录到确认后 1.5 秒" in pages[on_main]
    assert "取证时主码流中断，图片取自子码流" in pages[on_sub] and "视频片段不完整" not in pages[on_sub]
    assert not [word for word in ("主码流", "子码流", "视频片段不完整") if word in pages[first.case_id]]
