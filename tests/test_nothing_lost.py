"""Faults injected into real servers on loopback: Redis and S3 outages, a SIGKILLed worker, bad input.

Each test counts cases expected (the sample's ground-truth episodes), found, and duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_CAMERA, SAMPLE_VIDEO
from test_patrol import expected_cases, match

from pipeline.config import load_camera
from pipeline.queue import open_queue

STREAM = "patrol:cases"


def patrol_replay(out: Path, *options: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "replay", str(SAMPLE_VIDEO), "--camera", str(SAMPLE_CAMERA),
         "--out", str(out), "--drain-timeout", "90", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def spooled(out: Path) -> int:
    spool = out / "spool"
    return sum(1 for p in spool.iterdir() if "--" in p.name) if spool.is_dir() else 0


def stream_case_ids(redis_server) -> list[str]:
    client = redis_server.client()
    try:
        return [fields["case_id"] for _, fields in client.xrange(STREAM)]
    finally:
        client.close()


def assert_ground_truth(case_ids: list[str], out: Path) -> None:
    """Every episode once, nothing else: the queue's ids are those the run logged, each once."""
    duplicated = [case_id for case_id, n in Counter(case_ids).items() if n > 1]
    print(f"cases expected 4, found {len(set(case_ids))}, duplicated {len(duplicated)}")
    assert duplicated == []
    logged = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert sorted(c["case_id"] for c in logged) == sorted(case_ids)
    matched, missing, extra = match(logged, expected_cases(load_camera(SAMPLE_CAMERA)))
    assert (len(matched), missing, extra) == (4, [], [])


def test_redis_stopped_mid_run_every_case_reaches_the_stream_once(tmp_path: Path, redis_server, redis_url) -> None:
    out = tmp_path / "out"
    run = patrol_replay(out, "--queue", redis_url)
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
    assert_ground_truth(stream_case_ids(redis_server), out)
    assert spooled(out) == 0


def test_s3_stopped_mid_run_every_evidence_object_arrives_intact(tmp_path: Path, s3_server, s3_env) -> None:
    out = tmp_path / "out"
    client = s3_server.client()
    bucket = s3_env["S3_BUCKET"]

    def metadata_objects() -> int:
        if not client.bucket_exists(bucket):
            return 0
        return sum(o.object_name.endswith("metadata.json") for o in client.list_objects(bucket, recursive=True))

    run = patrol_replay(out, "--evidence", f"s3://{bucket}", env=s3_env)
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
    assert_ground_truth([r.case_id for r in records], out)
    for record in records:
        for name, item in record.evidence.items():
            data = client.get_object(bucket, item.key).read()
            assert hashlib.sha256(data).hexdigest() == item.sha256, (record.case_id, name)
            assert client.stat_object(bucket, item.key).metadata["x-amz-meta-sha256"] == item.sha256


def test_worker_killed_with_spooled_cases_loses_and_duplicates_nothing(tmp_path: Path, redis_server,
                                                                       redis_url) -> None:
    out = tmp_path / "out"
    redis_server.stop()  # cases pile up in the spool
    first = patrol_replay(out, "--queue", redis_url)
    try:
        wait_for(lambda: spooled(out) >= 2, 120, "two cases in the spool")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    assert first.returncode == -signal.SIGKILL
    held = spooled(out)
    redis_server.start()

    second = patrol_replay(out, "--queue", redis_url)  # the restarted worker: same spool, same stream
    stdout, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr
    print(f"SIGKILL with {held} case(s) in the spool")
    assert held >= 2
    assert_ground_truth(stream_case_ids(redis_server), out)
    assert spooled(out) == 0


def test_corrupt_video_files_what_it_could_and_names_the_damage(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(SAMPLE_VIDEO.read_bytes())
    middle = len(data) // 2  # about 75 s in: after the first two cases
    data[middle:middle + 20_000] = os.urandom(20_000)
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "replay", str(damaged), "--camera", str(SAMPLE_CAMERA),
         "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 2
    assert "damaged.mp4" in run.stderr and "Traceback" not in run.stderr
    logged = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    confirmed = sorted(c["confirmed_s"] for c in logged)
    assert len(confirmed) >= 2 and confirmed[0] < 35 and confirmed[1] < 50


def test_truncated_video_is_refused_with_the_reason(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(SAMPLE_VIDEO.read_bytes()[: SAMPLE_VIDEO.stat().st_size // 3])
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "replay", str(truncated), "--camera", str(SAMPLE_CAMERA),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 2
    assert "truncated.mp4" in run.stderr and "Traceback" not in run.stderr


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
    camera = tmp_path / "dead.yaml"
    camera.write_text(SAMPLE_CAMERA.read_text().replace(
        "url: samples/sample-street.mp4", f"url: rtsp://admin:hunter2@127.0.0.1:{port}/live\n"
        "ingest:\n  open_timeout_s: 1\n  read_timeout_s: 1\n  reconnect_min_s: 0.2\n  reconnect_max_s: 1\n"
        "  offline_fault_after_s: 3"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", "run", str(camera), "--var", str(tmp_path / "var"),
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
