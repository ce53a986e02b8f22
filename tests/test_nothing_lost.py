"""Faults injected into real servers on loopback: Redis and S3 outages, a SIGKILLed worker, bad input.

Each test counts cases expected (the ground-truth episodes of the compressed street: the sample's
first 50 s with its parking and stall dwells at 5 s, whose first parked car, stall and second car are confirmed at
15, 25 and 45 s), found, and duplicated. The `patrol` processes are ``tests/remembering_patrol.py``:
the CLI with the network's boxes remembered across the test run, at the network's pace.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from support import (
    NETWORK_PACE_S,
    PATROL,
    REPO,
    SAMPLE_CAMERA,
    SAMPLE_VIDEO,
    camera_file,
    cut_video,
    expected_cases,
    garble,
    match,
    remembered_detections,
    remembering_detectors,
    remembering_patrol,
    wait_for,
)

import pipeline.delivery.spool as spool_module
from pipeline.cli.main import main
from pipeline.config import load_camera
from pipeline.engine import compose
from pipeline.queue import open_queue

STREAM = "patrol:cases"


STREET_S, DWELL_S = 50.0, 5.0


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> Path:
    """The compressed street: the sample's first 50 s, with its ground truth."""
    return cut_video(SAMPLE_VIDEO, tmp_path_factory.mktemp("street") / "street.mp4", seconds=STREET_S)


@pytest.fixture(scope="module")
def street_camera(tmp_path_factory) -> Path:
    """The sample's camera file with the parking and stall dwells at 5 s. The bin keeps its 15 s:
    the model calls the plain bin overflowing for a few seconds now and then, which is no case."""
    path = camera_file(tmp_path_factory.mktemp("street-camera") / "camera.yaml")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for rule in (rule for zone in doc["zones"] for rule in zone["rules"]):
        if rule["type"] in ("illegal_parking", "stall_encroachment"):
            rule["dwell_s"] = DWELL_S
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def patrol(tmp_path_factory) -> tuple[str, ...]:
    return remembering_patrol(tmp_path_factory, pace_s=NETWORK_PACE_S)


def patrol_replay(patrol: tuple[str, ...], video: Path, camera: Path, out: Path, *options: str,
                  env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*patrol, "replay", str(video), "--camera", str(camera),
         "--out", str(out), "--drain-timeout", "90", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def spooled(out: Path) -> int:
    spool = out / "spool"
    return sum(1 for p in spool.iterdir() if "--" in p.name) if spool.is_dir() else 0


def stream_case_ids(redis_server) -> list[str]:
    client = redis_server.client()
    try:
        return [fields["case_id"] for _, fields in client.xrange(STREAM)]
    finally:
        client.close()


def assert_ground_truth(case_ids: list[str], out: Path, video: Path, camera: Path) -> None:
    """Every episode once, nothing else: the queue's ids are those the run logged, each once."""
    expected = expected_cases(load_camera(camera), video)
    assert len(expected) == 3  # one case before each outage or kill below, two after
    duplicated = [case_id for case_id, n in Counter(case_ids).items() if n > 1]
    print(f"cases expected {len(expected)}, found {len(set(case_ids))}, duplicated {len(duplicated)}")
    assert duplicated == []
    logged = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert sorted(c["case_id"] for c in logged) == sorted(case_ids)
    matched, missing, extra = match(logged, expected)
    assert (len(matched), missing, extra) == (len(expected), [], [])


def test_redis_stopped_mid_run_every_case_reaches_the_stream_once(tmp_path: Path, patrol, street: Path,
                                                                   street_camera: Path, redis_server,
                                                                   redis_url) -> None:
    out = tmp_path / "out"
    run = patrol_replay(patrol, street, street_camera, out, "--queue", redis_url)
    try:
        wait_for(lambda: len(stream_case_ids(redis_server)) >= 1, 90, "the first case on the stream")
        redis_server.stop()
        wait_for(lambda: spooled(out) >= 2, 90, "two cases spooled while Redis is down")
        held = spooled(out)
        time.sleep(2)
        redis_server.start()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    print(f"Redis down: {held} case(s) held in the spool")
    assert held >= 2
    assert "backends were unreachable 1 time(s)" in stdout
    assert_ground_truth(stream_case_ids(redis_server), out, street, street_camera)
    assert spooled(out) == 0


def test_s3_stopped_mid_run_every_evidence_object_arrives_intact(tmp_path: Path, patrol, street: Path,
                                                                 street_camera: Path, s3_server, s3_env) -> None:
    out = tmp_path / "out"
    client = s3_server.client()
    bucket = s3_env["S3_BUCKET"]

    def metadata_objects() -> int:
        if not client.bucket_exists(bucket):
            return 0
        return sum(o.object_name.endswith("metadata.json") for o in client.list_objects(bucket, recursive=True))

    run = patrol_replay(patrol, street, street_camera, out, "--evidence", f"s3://{bucket}", env=s3_env)
    try:
        wait_for(lambda: metadata_objects() >= 1, 90, "the first case's evidence in the bucket")
        s3_server.stop()
        wait_for(lambda: spooled(out) >= 2, 90, "two cases spooled while S3 is down")
        held = spooled(out)
        time.sleep(2)
        s3_server.start()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        run.kill()
        if not s3_server.running:
            s3_server.start()
    assert run.returncode == 0, stderr
    print(f"S3 down: {held} case(s) held in the spool")
    assert "backends were unreachable 1 time(s)" in stdout
    with open_queue(f"sqlite:///{out / 'queue' / 'cases.sqlite3'}") as queue:
        records = [d.record for d in queue.consume("auditor", count=100)]
    assert_ground_truth([r.case_id for r in records], out, street, street_camera)
    for record in records:
        for name, item in record.evidence.items():
            data = client.get_object(bucket, item.key).read()
            assert hashlib.sha256(data).hexdigest() == item.sha256, (record.case_id, name)
            assert client.stat_object(bucket, item.key).metadata["x-amz-meta-sha256"] == item.sha256


def test_worker_killed_with_spooled_cases_loses_and_duplicates_nothing(tmp_path: Path, patrol, street: Path,
                                                                       street_camera: Path, redis_server,
                                                                       redis_url) -> None:
    out = tmp_path / "out"
    redis_server.stop()  # cases pile up in the spool
    first = patrol_replay(patrol, street, street_camera, out, "--queue", redis_url)
    try:
        wait_for(lambda: spooled(out) >= 2, 120, "two cases in the spool")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    assert first.returncode == -signal.SIGKILL
    held = spooled(out)
    redis_server.start()

    # restarted: same spool, same stream
    second = patrol_replay(patrol, street, street_camera, out, "--queue", redis_url)
    stdout, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr
    print(f"SIGKILL with {held} case(s) in the spool")
    assert held >= 2
    assert_ground_truth(stream_case_ids(redis_server), out, street, street_camera)
    assert spooled(out) == 0


@pytest.mark.heavy
def test_corrupt_video_files_what_it_could_and_names_the_damage(tmp_path: Path, patrol, street: Path,
                                                                street_camera: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    garble(street, damaged, at_s=32.0)  # 20 kB of garbage 32 s in: after the first two cases
    out = tmp_path / "out"
    run = subprocess.run(
        [*patrol, "replay", str(damaged), "--camera", str(street_camera),
         "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 2
    assert "damaged.mp4" in run.stderr and "Traceback" not in run.stderr
    logged = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    confirmed = sorted(c["confirmed_s"] for c in logged)
    assert len(confirmed) >= 2 and confirmed[0] < 20 and confirmed[1] < 30


@pytest.mark.heavy
def test_replay_on_a_full_disk_ends_with_one_line_naming_the_path_and_the_cases_not_written(
        tmp_path: Path, street: Path, street_camera: Path, monkeypatch, capsys, tmp_path_factory) -> None:
    def full(path: Path, data: bytes) -> None:  # the spool's disk has no room, from start to end
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(spool_module, "write_synced", full)
    monkeypatch.setattr(compose, "Detector", remembering_detectors(remembered_detections(tmp_path_factory)))
    out = tmp_path / "out"
    code = main(["replay", str(street), "--camera", str(street_camera), "--out", str(out), "--drain-timeout", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    expected = expected_cases(load_camera(street_camera), street)
    assert [line for line in err.splitlines() if line.startswith("patrol replay:")] == [
        f"patrol replay: disk full at {out / 'spool'}: {len(expected)} case(s) not written"]


def test_truncated_video_is_refused_with_the_reason(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(SAMPLE_VIDEO.read_bytes()[: SAMPLE_VIDEO.stat().st_size // 3])
    run = subprocess.run(
        [*PATROL, "replay", str(truncated), "--camera", str(SAMPLE_CAMERA),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 2
    assert "truncated.mp4" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.realtime  # a live patrol of 8 s on the wall clock; the fault is filed after 3 s offline
@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_dead_camera_url_is_reported_offline_and_filed_as_a_fault(tmp_path: Path, answer: str) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if answer == "refused":
        listener.close()
    else:
        listener.listen(8)  # accepts, never speaks
    camera = camera_file(tmp_path / "dead.yaml", url=f"rtsp://admin:hunter2@127.0.0.1:{port}/live", ingest={
        "open_timeout_s": 1, "read_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 1,
        "offline_fault_after_s": 3})
    try:
        run = subprocess.run(
            [*PATROL, "run", str(camera), "--var", str(tmp_path / "var"),
             "--duration", "8", "--health-every", "2", "--metrics", "off"],
            capture_output=True, text=True, cwd=REPO, timeout=120)
    finally:
        listener.close()
    assert run.returncode == 0, run.stderr
    health = [line for line in run.stdout.splitlines() if line.startswith("[health] shuangshan-sample")]
    assert health and all(" live " not in line for line in health)
    assert any("shuangshan-sample: cannot open rtsp://admin:***@127.0.0.1" in line for line in health)
    assert "hunter2" not in run.stdout + run.stderr
    with open_queue(f"sqlite:///{tmp_path / 'var' / 'queue' / 'cases.sqlite3'}") as queue:
        faults = [d.record for d in queue.consume("auditor", count=10)]
    assert [(r.violation, r.event_code, r.camera_id) for r in faults] == [("camera_fault", "0601", "shuangshan-sample")]
    assert faults[0].dwell_s >= 3
