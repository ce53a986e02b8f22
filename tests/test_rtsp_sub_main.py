"""A camera with ``detect_url`` on the real GStreamer RTSP server: one scene served at two resolutions
as two live mounts in step (the sub-stream 640x360, the main stream 960x540), as a camera's two
encoders serve it; ``server.drop`` / ``server.restore`` restart one of them while the other runs on.

The live patrol analyses the sub-stream and files the parked car once, its photos and clip the main
stream's; with the main stream restarted mid-episode it files the car once, from the sub-stream,
saying so; with the sub-stream restarted, once, from the main stream, its clock estimated afresh.
Where a picture is in the scene is found by matching it against the video's own frames (both
streams share their frame times), which measures the clocks' reconciliation.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from fixture_rtsp import gst_rtsp_missing
from sub_main_support import FPS, MAIN_SIZE, SUB_SIZE, Positions, sub_main_pair
from support import sample_camera, wait_for

from pipeline.config import Workspace
from pipeline.engine import Patrol, embedded_cases
from pipeline.ingest import SubMainSource
from pipeline.queue import SqliteCaseQueue

_missing = gst_rtsp_missing()
pytestmark = [pytest.mark.skipif(_missing is not None, reason=f"the GStreamer RTSP server is missing: {_missing}"),
              pytest.mark.servers, pytest.mark.realtime]

INGEST = {"open_timeout_s": 2, "read_timeout_s": 2, "stall_after_s": 1.5, "reconnect_min_s": 0.2,
          "reconnect_max_s": 1, "offline_fault_after_s": 60}
FRAME_S = 1 / FPS
MATCH_MAX_ERROR = 4.0  # mean absolute grey difference of a picture and its frame of the video
# A connection starts with the packets FFmpeg buffered while probing, handed over in a burst: late, so
# the clock's estimate settles on the packets that follow in real time (a second's worth is plenty).
SETTLE_S = 1.5


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return sub_main_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def positions(pair) -> Positions:
    return Positions(pair[0])


class Run:
    """A live patrol of the server's two mounts as one camera, filing into ``tmp_path``."""

    def __init__(self, server, tmp_path: Path, detector, **ingest) -> None:
        camera = sample_camera(dwell_s=5.0, url=server.url("main"), detect_url=server.url("sub"),
                               ingest={**INGEST, **ingest})
        camera = camera.model_copy(update={"zones": [z for z in camera.zones if z.id == "no-parking-kerb"]})
        self.workspace = Workspace(tmp_path)
        self.cases = embedded_cases(self.workspace, {"name": "m", "sha256": "0" * 64})
        self.delivered: list = []
        self.cases.filer.listeners.append(lambda record, is_new: self.delivered.append(record))
        self.lines: list[str] = []
        self.patrol = Patrol([camera], detector, self.cases, loop_files=False, health_every_s=1,
                             print_line=self.lines.append)
        (self.camera,) = self.patrol.cameras
        self.source: SubMainSource = self.camera.source
        self.ring = self.source.dual
        self._runner = threading.Thread(target=self.patrol.run, kwargs={"duration_s": 90})

    def __enter__(self) -> Run:
        self._runner.start()
        return self

    def __exit__(self, *_) -> None:
        self.patrol.stop()
        self._runner.join(timeout=60)
        assert not self._runner.is_alive()
        assert self.cases.filer.close(drain_timeout_s=10) == 0

    def both_live(self) -> bool:
        return self.source.state == "live" and self.source.main.state == "live"

    def parking(self) -> list:
        return [r for r in self.delivered if r.violation == "illegal_parking"]

    def faults(self) -> list:
        return [r for r in self.delivered if r.violation == "camera_fault"]

    def file(self, record, name: str) -> bytes:
        return (self.workspace.evidence / record.evidence[name].key).read_bytes()

    def metadata(self, record) -> dict:
        return json.loads(self.file(record, "metadata.json"))

    def picture_size(self, record, name: str) -> tuple[int, int]:
        image = cv2.imdecode(np.frombuffer(self.file(record, name), np.uint8), cv2.IMREAD_COLOR)
        return image.shape[1], image.shape[0]

    def clip_size(self, record) -> tuple[int, int]:
        with av.open(io.BytesIO(self.file(record, "clip.mp4"))) as container:
            picture = next(container.decode(video=0))
            return picture.width, picture.height

    def clock_errors(self, positions: Positions, looks: int = 4) -> list[float]:
        """For the newest analysed sub-stream frames, how far in the scene the main stream's picture
        of the same moment (by the reconciled clocks) is from it, in seconds."""
        errors = []
        for _ in range(looks):
            frame = self.camera.pipeline.last_frame
            picture = self.ring.picture(frame.pts_s, wait_s=2.0)
            assert picture is not None and picture.size == MAIN_SIZE and frame.size == SUB_SIZE
            (sub_at, sub_error), (main_at, main_error) = positions.of(frame.image), positions.of(picture.image)
            assert sub_error <= MATCH_MAX_ERROR and main_error <= MATCH_MAX_ERROR, (sub_error, main_error)
            errors.append(main_at - sub_at)
            time.sleep(0.4)
        return errors


def test_the_parked_car_is_filed_once_with_main_stream_photos(rtsp_server, pair, positions, detector,
                                                              tmp_path: Path) -> None:
    main, sub = pair
    server = rtsp_server({"sub": sub, "main": main}, live=True)
    with Run(server, tmp_path, detector) as run:
        wait_for(run.both_live, 20, "both inputs live")
        wait_for(lambda: run.parking(), 40, "the parking case")
        errors = run.clock_errors(positions)
        offset = run.ring.offset(run.camera.pipeline.last_frame.pts_s).main_minus_sub_s
        print(f"clock offset {offset:+.3f}s; main picture minus sub frame in the scene: {errors}")
        assert all(abs(e) <= 1.01 * FRAME_S for e in errors), errors
        time.sleep(2)  # nothing more to file
    (case,) = run.parking()
    assert len(run.delivered) == 1
    assert case.evidence_stream == "main"
    for name in ("frame.jpg", "annotated.jpg", "first_seen.jpg"):
        assert run.picture_size(case, name) == MAIN_SIZE
    assert run.clip_size(case) == MAIN_SIZE
    streams = run.metadata(case)["streams"]
    assert streams["photos"] == "main" and streams["clip"] == "main" and streams["sub_size"] == list(SUB_SIZE)
    assert case.bbox[2] > SUB_SIZE[0] * 0.3 and case.bbox[3] > SUB_SIZE[1]  # main-stream pixels: below 360
    line = next(line for line in reversed(run.lines) if "sub=" in line)
    assert " sub=live main=live main-in=" in line and " clock=" in line


def test_the_main_stream_restarted_mid_episode_files_once_from_the_sub_stream_and_says_so(
        rtsp_server, pair, positions, detector, tmp_path: Path) -> None:
    main, sub = pair
    server = rtsp_server({"sub": sub, "main": main}, live=True)
    with Run(server, tmp_path, detector, offline_fault_after_s=3.0) as run:
        wait_for(run.both_live, 20, "both inputs live")
        time.sleep(max(0.0, server.started_wall + 4.5 - time.time()))  # the car parked at 2 s, confirmed at ~7
        server.drop("main")
        dropped_wall = time.time()
        wait_for(lambda: run.source.main.state == "offline", 10, "the main stream offline")
        wait_for(lambda: run.parking(), 40, "the parking case, filed with the main stream down")
        wait_for(lambda: run.faults(), 10, "the main stream's fault case, down past its 3 s")
        server.restore("main")
        wait_for(lambda: run.source.main.state == "live", 15, "the main stream live again")
        time.sleep(SETTLE_S)
        errors = run.clock_errors(positions)  # its clock estimated afresh after the reconnect
        print(f"after the main stream's restart: main picture minus sub frame in the scene: {errors}")
        assert all(abs(e) <= 1.01 * FRAME_S for e in errors), errors
        time.sleep(2)
    (case,) = run.parking()
    (fault,) = run.faults()  # the main stream's, not the camera's: its sub-stream never stopped
    assert len(run.delivered) == 2 and run.metadata(fault)["fault"]["state"] == "main_offline"
    queue = SqliteCaseQueue(run.workspace.queue_db)
    notes = {note.kind: note for note in queue.notes(fault.case_id)}
    queue.close()
    assert set(notes) == {"main_stream", "camera_recovered"} and "取自子码流" in notes["main_stream"].text
    dropped_s = run.ring.sub.clock.pts_of(dropped_wall)
    assert case.first_seen_s < dropped_s < case.confirmed_s  # mid-episode
    assert case.evidence_stream == "sub"
    meta = run.metadata(case)
    assert meta["streams"]["photos"] == "sub" and meta["streams"]["clip"] == "sub"
    assert "main stream" in meta["streams"]["reason"]
    assert run.picture_size(case, "frame.jpg") == SUB_SIZE and run.clip_size(case) == SUB_SIZE
    assert run.ring.main.clock.epochs == 2 and run.ring.sub.clock.epochs == 1
    main_states = [change.new for change in run.source.main.history]
    assert main_states[main_states.index("live"):].count("live") == 2 and "offline" in main_states
    assert "offline" not in [change.new for change in run.source.history]  # the analysed input ran on
    assert any(" main=offline " in line and " main-error: " in line for line in run.lines)


def test_the_sub_stream_restarted_mid_episode_files_once_from_the_main_stream(rtsp_server, pair, positions, detector,
                                                                             tmp_path: Path) -> None:
    main, sub = pair
    server = rtsp_server({"sub": sub, "main": main}, live=True)
    with Run(server, tmp_path, detector) as run:
        wait_for(run.both_live, 20, "both inputs live")
        time.sleep(max(0.0, server.started_wall + 4.5 - time.time()))
        server.drop("sub")
        wait_for(lambda: run.source.state == "offline", 10, "the sub-stream offline")
        time.sleep(1.0)
        server.restore("sub")
        wait_for(lambda: run.source.state == "live", 15, "the sub-stream live again")
        wait_for(lambda: run.parking(), 40, "the parking case")
        time.sleep(max(0.0, SETTLE_S - (time.time() - run.source.state_since)))
        errors = run.clock_errors(positions)
        print(f"after the sub-stream's restart: main picture minus sub frame in the scene: {errors}")
        assert all(abs(e) <= 1.01 * FRAME_S for e in errors), errors
        time.sleep(2)
    (case,) = run.parking()
    assert len(run.delivered) == 1
    assert case.evidence_stream == "main" and run.picture_size(case, "frame.jpg") == MAIN_SIZE
    assert run.clip_size(case) == MAIN_SIZE
    assert run.ring.sub.clock.epochs == 2 and run.ring.main.clock.epochs == 1
    assert "offline" not in [change.new for change in run.source.main.history]
