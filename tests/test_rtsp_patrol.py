"""The patrol on a real RTSP server that dies and comes back: states, fault case, metrics, later cases."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

from support import DEFAULT_MODEL, SAMPLE_VIDEO, cut_video, sample_camera, wait_for

from pipeline.config import Workspace
from pipeline.detect import Detector
from pipeline.engine import Patrol, embedded_cases
from pipeline.engine.health import serve_metrics
from pipeline.queue import SqliteCaseQueue

BACK_LIVE_WITHIN_S = 8.0  # restart → live: reconnect backoff ≤ 1 s plus FFmpeg probing the stream (~1.5 s)
# The compressed street: the sample from 8 s on, its dwells cut to 5 s. The first car parks 2 s into
# the stream, which the restarted server sends again from its start, so the first parking case after
# recovery is confirmed ~7 s after it and filed ~11 s after it (4 s post-roll), not ~34 s; the kill
# comes ~3 s into the first stream, before any car could have stood its dwell.
STREET_FROM_S = 8.0
DWELL_S = 5.0


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}


def test_server_killed_and_restarted_mid_stream(tmp_path: Path, rtsp_server) -> None:
    server = rtsp_server({"street": cut_video(SAMPLE_VIDEO, tmp_path / "street.mp4", start_s=STREET_FROM_S)})
    camera = sample_camera(url=server.url("street"), dwell_s=DWELL_S, ingest={
        "open_timeout_s": 2, "read_timeout_s": 3, "stall_after_s": 1.5, "reconnect_min_s": 0.2,
        "reconnect_max_s": 1, "offline_fault_after_s": 3})
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    delivered: list[tuple[float, object]] = []
    cases.filer.listeners.append(lambda record, is_new: delivered.append((time.time(), record)))
    lines: list[str] = []
    patrol = Patrol([camera], Detector(DEFAULT_MODEL), cases, loop_files=False, health_every_s=1,
                    print_line=lines.append)
    metrics = serve_metrics("127.0.0.1:0", patrol.report)
    runner = threading.Thread(target=patrol.run, kwargs={"duration_s": 150})
    runner.start()
    (cam,) = patrol.cameras
    label = '{camera="shuangshan-sample"}'
    try:
        wait_for(lambda: cam.state == "live" and cam.pipeline.stats.analysed >= 10, 30, "the camera live")
        assert scrape(metrics)[f"patrol_camera_received_fps{label}"] > 10  # the sample is 15 fps

        server.kill()
        wait_for(lambda: cam.state in ("offline", "connecting"), 10, "the camera offline")
        wait_for(lambda: any(r.violation == "camera_fault" for _, r in delivered), 15, "the fault case")
        time.sleep(6)  # longer than the rate window: a dead stream's rates read 0
        dead = scrape(metrics)
        assert dead[f"patrol_camera_received_fps{label}"] == 0
        assert dead[f"patrol_camera_analysed_fps{label}"] == 0
        assert dead['patrol_camera_state{camera="shuangshan-sample",state="live"}'] == 0
        assert dead[f"patrol_camera_reconnects_total{label}"] >= 1

        server.start()
        restarted_wall = time.time()
        back_after_s = wait_for(lambda: cam.state == "live", 30, "the camera live again")
        print(f"RTSP server restarted: camera live again after {back_after_s:.2f}s")
        assert back_after_s < BACK_LIVE_WITHIN_S
        wait_for(lambda: any(r.violation == "illegal_parking" for _, r in delivered), 60,
                 "the first parking case after recovery")
    finally:
        patrol.stop()
        runner.join(timeout=60)
        left = cases.filer.close(drain_timeout_s=10)

    assert not runner.is_alive() and left == 0
    states = [change.new for change in cam.source.history]
    first_live = states.index("live")
    assert "offline" in states[first_live:] and "live" in states[states.index("offline", first_live):]
    faults = [r for _, r in delivered if r.violation == "camera_fault"]
    assert len(faults) == 1 and faults[0].event_code == "0601"
    with SqliteCaseQueue(Workspace(tmp_path).queue_db) as reader:
        notes = reader.notes(faults[0].case_id)
    assert [note.kind for note in notes] == ["camera_down", "camera_recovered"]
    parking = [(at, r) for at, r in delivered if r.violation == "illegal_parking"]
    assert parking and all(at > restarted_wall for at, _ in parking)
    assert any(" offline " in line or " connecting " in line for line in lines)
