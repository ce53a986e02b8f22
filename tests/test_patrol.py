"""The patrol end to end on the shipped sample street: replay, broken tracks, the demo, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from support import (
    PATROL,
    REPO,
    SAMPLE_CAMERA,
    SAMPLE_VIDEO,
    Replay,
    camera_file,
    expected_cases,
    heavy_fixture,
    match,
    replay_sample,
    unusable_sqlite_file,
)

from pipeline.config import Workspace, load_camera
from pipeline.engine import embedded_cases
from pipeline.queue import SqliteCaseQueue


def run_replay(out: Path, detector) -> list[dict]:
    return replay_sample(out, detector).cases


@heavy_fixture(scope="module")
def second_replay(tmp_path_factory, detector) -> Replay:
    """The sample replayed again, in this process, on the session replay's clock, into a folder of its own."""
    return replay_sample(tmp_path_factory.mktemp("second-replay"), detector)


def test_replay_of_the_sample_files_exactly_the_ground_truth_episodes(sample_replay):
    cases = sample_replay.cases
    expected = expected_cases(load_camera(SAMPLE_CAMERA))
    assert len(expected) == 4  # two parked cars, the stall, the overflowing bin; the short stop is none
    matched, missing, extra = match(cases, expected)
    assert missing == [] and extra == []
    assert len({c["case_id"] for c in cases}) == len(cases)


def test_every_case_has_its_evidence_with_matching_sha256(sample_replay):
    out, cases = sample_replay.out, sample_replay.cases
    import hashlib

    for case in cases:
        files = case["evidence"]
        assert set(files) >= {"frame.jpg", "annotated.jpg", "crop.jpg", "first_seen.jpg", "clip.mp4", "metadata.json"}
        metadata = json.loads(Path(files["metadata.json"]).read_text())
        assert metadata["case_id"] == case["case_id"]
        for name, path in files.items():
            if name != "metadata.json":
                assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == metadata["evidence"][name]["sha256"]
    with sqlite3.connect(Workspace(out).queue_db) as db:
        assert db.execute("select count(*) from cases").fetchone()[0] == len(cases)


def test_a_second_replay_files_the_same_case_ids(sample_replay, second_replay):
    assert [c["case_id"] for c in second_replay.cases] == [c["case_id"] for c in sample_replay.cases]


class OccludedDetector:
    """The real detector, but the parked cars vanish for a while (a bus passing in front)."""

    def __init__(self, detector, hidden_spans_s, analysis_fps):
        self.detector, self.hidden, self.period = detector, hidden_spans_s, 1.0 / analysis_fps
        self.card, self.calls = detector.card, 0

    def detect(self, images):
        pts = self.calls * self.period
        self.calls += 1
        result = self.detector.detect(images)
        if any(a <= pts < b for a, b in self.hidden):
            return [d[d.role != "vehicle"] for d in result]
        return result


@pytest.mark.heavy
def test_a_parked_car_whose_track_breaks_still_gives_one_case(tmp_path, detector, monkeypatch):
    from pipeline.track import Tracker

    vehicle_ids: dict[float, set[int]] = {}
    real_update = Tracker.update

    def spy(self, detections, pts_s):
        tracks = real_update(self, detections, pts_s)
        bottoms = tracks.xyxy[:, 3] if len(tracks) else np.zeros(0)
        vehicle_ids[round(pts_s, 1)] = {int(t) for t, r, y in zip(tracks.track_id, tracks.role, bottoms)
                                        if r == "vehicle" and y > 0.8 * 540}
        return tracks

    monkeypatch.setattr(Tracker, "update", spy)
    # 4 s: longer than the tracker keeps a lost track (3 s), shorter than the rule's max_gap_s (5 s);
    # mid-dwell of the first parked car (10-55 s) and after the third one's confirmation (80-140 s)
    cases = run_replay(tmp_path, OccludedDetector(detector, [(18.0, 22.0), (110.0, 114.0)], 5))
    before, after = vehicle_ids[17.0], vehicle_ids[25.0]
    assert before and after and not (before & after), "the occlusion should have broken the track"
    parking = [c for c in cases if c["violation"] == "illegal_parking"]
    matched, missing, extra = match(parking, [e for e in expected_cases(load_camera(SAMPLE_CAMERA))
                                              if e[0] == "illegal_parking"])
    assert missing == [] and extra == []
    assert parking[0]["first_seen_s"] < 12.0  # the dwell kept counting from the original stop


def test_a_malformed_camera_file_is_refused_naming_the_field(tmp_path):
    bad = tmp_path / "cam.yaml"
    bad.write_text(SAMPLE_CAMERA.read_text().replace("dwell_s: 20", "dwell_s: -5"))
    result = subprocess.run([*PATROL, "replay", str(SAMPLE_VIDEO),
                             "--camera", str(bad), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "cam.yaml" in result.stderr and "zones[0].rules[0].dwell_s" in result.stderr


def test_patrol_run_refuses_cameras_none_of_which_can_ever_be_opened(tmp_path):
    gone = camera_file(tmp_path / "gone.yaml", url=str(tmp_path / "gone.mp4"))
    ftp = camera_file(tmp_path / "ftp.yaml", id="ftp-cam", url="ftp://admin:hunter2@nvr.example/street.mp4")
    result = subprocess.run([*PATROL, "run", str(gone), str(ftp), "--var", str(tmp_path / "var"),
                             "--duration", "20", "--metrics", "off"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{gone}: url {tmp_path / 'gone.mp4'}: video file not found" in result.stderr
    assert f"{ftp}: url ftp://admin:***@nvr.example/street.mp4: ftp:// is not a camera URL" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(("verb", "damaged", "damage", "reason"), [
    ("run", "queue/cases.sqlite3", "garbage", "not a SQLite database"),
    ("replay", "queue/cases.sqlite3", "malformed", "database disk image is malformed"),
    ("serve", "queue/cases.sqlite3", "garbage", "not a SQLite database"),
    ("serve", "review/review.sqlite3", "malformed", "database disk image is malformed"),
    ("verify", "review/review.sqlite3", "garbage", "not a SQLite database"),
])
def test_a_database_file_that_is_no_database_stops_the_verb_with_one_line(tmp_path, verb, damaged, damage, reason):
    var = tmp_path / "var"
    path = unusable_sqlite_file(var / damaged, damage)
    argv = {
        "run": ["run", str(SAMPLE_CAMERA), "--var", str(var), "--metrics", "off", "--duration", "5"],
        "replay": ["replay", str(SAMPLE_VIDEO), "--camera", str(SAMPLE_CAMERA), "--out", str(var)],
        "serve": ["serve", "--db", str(var / "review" / "review.sqlite3"), "--queue", f"sqlite:///{var}/queue/cases.sqlite3",
                  "--evidence", str(var / "evidence"), "--port", "0"],
        "verify": ["verify", "--db", str(path), "--evidence", str(var / "evidence")],
    }[verb]

    result = subprocess.run([*PATROL, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"patrol {verb}: ") and line.endswith(f"{path}: {reason}")


def cases_on_the_review_page(lines: list[str]) -> int:
    """Logs in to the demo's review page as the printed user; the number of cases it lists."""
    import urllib.request

    found = next(re.search(r"\[review\] (http://\S+) .*log in as (\S+) / (\S+)", line) for line in lines
                 if line.startswith("[review]"))
    url, user, password = found.groups()
    login = urllib.request.Request(url + "api/login", data=json.dumps({"name": user, "password": password}).encode(),
                                   headers={"Content-Type": "application/json"})
    token = json.loads(urllib.request.urlopen(login, timeout=10).read())["access_token"]
    deadline = time.monotonic() + 20
    while True:  # the page takes cases from the queue in the background
        listing = urllib.request.Request(url + "api/cases", headers={"Authorization": f"Bearer {token}"})
        total = json.loads(urllib.request.urlopen(listing, timeout=10).read())["total"]
        if total or time.monotonic() > deadline:
            return total
        time.sleep(0.5)


@pytest.mark.servers  # metrics and the review page on ports of their own
@pytest.mark.realtime  # the demo plays the sample at real speed: its first case comes 30 s in
def test_the_demo_files_cases_prints_health_and_stops_on_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [*PATROL, "demo", "--var", str(tmp_path / "var"), "--health-every", "2",
         "--metrics", "127.0.0.1:0", "--review", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    deadline = time.monotonic() + 90
    reviewable = 0
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("[case]") or time.monotonic() > deadline:
                break
        reviewable = cases_on_the_review_page(lines)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    lines += rest.splitlines()
    cases = [line for line in lines if line.startswith("[case]")]
    health = [line for line in lines if line.startswith("[health] shuangshan-sample")]
    assert cases and "illegal_parking" in cases[0] and "dwell=" in cases[0] and "score=" in cases[0]
    rates = [float(re.search(r"analysed=([\d.]+)/s", line).group(1)) for line in health if " live " in line]
    assert rates and max(rates) >= 4.5, health  # the camera's analysis_fps is 5
    assert process.returncode == 0
    assert lines[-1].startswith("patrol: stopped")
    assert reviewable >= 1  # a newcomer logs in with the printed password and sees the case
    evidence = list((tmp_path / "var" / "evidence").rglob("metadata.json"))
    assert len(evidence) >= 1


class StricterDetector:
    """The real detector's boxes scored 0.6 or more: what it finds at ``conf_threshold=0.6`` (NMS
    only ever drops a box for a higher-scored one, so a threshold before it or after it is the same)."""

    def __init__(self, detector, floor: float = 0.6) -> None:
        self.detector, self.floor, self.card = detector, floor, detector.card

    def detect(self, images):
        return [found[found.score >= self.floor] for found in self.detector.detect(images)]


def test_replaying_into_the_same_queue_keeps_the_filed_evidence(second_replay, detector):
    import hashlib

    first = second_replay.cases  # its queue and evidence are this test's to write into
    again = run_replay(second_replay.out, StricterDetector(detector))  # different scores: different pictures
    assert {c["case_id"] for c in again} & {c["case_id"] for c in first}  # some met again, now scored otherwise
    workspace = Workspace(second_replay.out)
    queue = SqliteCaseQueue(workspace.queue_db)
    try:
        for case in again:
            record = queue.get(case["case_id"])
            for name, item in record.evidence.items():
                data = (workspace.evidence / item.key).read_bytes()
                assert hashlib.sha256(data).hexdigest() == item.sha256, name
    finally:
        queue.close()


def test_a_camera_whose_file_is_missing_fails_once_and_the_patrol_ends(tmp_path, detector):
    from pipeline.engine import Patrol

    camera = load_camera(SAMPLE_CAMERA).model_copy(update={"url": str(tmp_path / "gone.mp4")})
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    try:
        lines: list[str] = []
        patrol = Patrol([camera], detector, cases, loop_files=True, health_every_s=0.5, print_line=lines.append)
        started = time.monotonic()
        patrol.run(duration_s=20)
        assert time.monotonic() - started < 5
        (live_camera,) = patrol.cameras
        assert live_camera.state == "failed"
        assert live_camera.pipeline.stats.reconnects == 0
        assert "video file not found" in live_camera.last_error and "gone.mp4" in live_camera.last_error
    finally:
        cases.filer.close(drain_timeout_s=5)


def test_a_failure_in_tracking_or_rules_stops_the_patrol_with_its_error(tmp_path, detector, monkeypatch):
    from pipeline.engine import CameraPipeline, Patrol

    def broken(self, frame, detections):
        raise RuntimeError(f"rules broke on frame {frame.seq}")

    monkeypatch.setattr(CameraPipeline, "step", broken)
    cases = embedded_cases(Workspace(tmp_path), {"name": "m", "sha256": "0" * 64})
    try:
        patrol = Patrol([load_camera(SAMPLE_CAMERA)], detector, cases, loop_files=True, print_line=lambda _: None)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="rules broke on frame"):
            patrol.run(duration_s=30)
        assert time.monotonic() - started < 10
    finally:
        cases.filer.close(drain_timeout_s=5)


def test_the_patrol_caps_malloc_arenas_unless_the_operator_chose(monkeypatch):
    """Arenas per thread let a worker's memory climb each time cameras move (pipeline/engine/allocator.py)."""
    from pipeline.engine.allocator import cap_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_malloc_arenas() is True  # glibc here: mallopt took the cap
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False  # glibc read the operator's value at start; left as it is
