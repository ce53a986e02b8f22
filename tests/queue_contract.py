"""Shared by the queue contract tests and the child process they kill.

Run as a script (``python queue_contract.py URL N``) it publishes N cases, takes them all as
one consumer without acknowledging, says so on stdout and waits to be killed.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import redis

from pipeline.queue import open_queue
from pipeline.queue.redis_queue import DEFAULT_STREAM_KEY
from pipeline.types import CaseRecord, EvidenceItem

LOCATION = {
    "lat": 30.274085,
    "lon": 120.15507,
    "address": "杭州市上城区人民路 18 号",
    "grid_code": "330102001001",
    "timezone": "Asia/Shanghai",
}

def make_record(index: int, *, score: float = 0.1 + 0.2) -> CaseRecord:
    """A realistic case; ``score`` defaults to a float whose repr has 17 digits."""
    case_id = f"cam-07-illegal_parking-{index:05d}"
    prefix = f"2024-05-01/cam-07/{case_id}"
    return CaseRecord(
        case_id=case_id,
        violation="illegal_parking",
        event_code="0505",
        event_name="机动车乱停放",
        camera_id="cam-07",
        camera_name="人民路与解放路口东",
        zone_id="no-parking-1",
        track_id=index,
        first_seen_s=12.04 + index,
        confirmed_s=312.04 + index,
        dwell_s=300.0,
        bbox=(101.5, 220.25, 388.0, 410.75),
        score=score,
        location=dict(LOCATION),
        first_seen_wall="2024-05-01T08:00:12.040+08:00",
        confirmed_wall="2024-05-01T08:05:12.040+08:00",
        model={"name": "yolo11s-city-v3", "sha256": "ab" * 32},
        pipeline_version="0.1.0",
        evidence={
            "frame.jpg": EvidenceItem(f"{prefix}/frame.jpg", "cd" * 32, "image/jpeg"),
            "metadata.json": EvidenceItem(f"{prefix}/metadata.json", "ef" * 32, "application/json"),
        },
    )


def publish_raw(url: str, body: dict[str, Any]) -> None:
    """Publishes ``body`` past ``CaseRecord``, as another version of the worker might have written it, on an
    already opened queue at ``url`` (its tables or consumer group exist)."""
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    case_id = body["case_id"]
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO cases (case_id, camera_id, violation, confirmed_at, published_at, record)"
                         " VALUES (?, ?, ?, 0, ?, ?)", (case_id, "cam-07", "illegal_parking", time.time(), text))
        conn.close()
        return
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        entry_id = client.xadd(DEFAULT_STREAM_KEY, {"case_id": case_id, "record": text})
        client.hset(f"{DEFAULT_STREAM_KEY}:ids", case_id, entry_id)
        client.hset(f"{DEFAULT_STREAM_KEY}:records", case_id, text)
    finally:
        client.close()


def _publish_take_and_hang(url: str, n: int) -> None:
    with open_queue(url) as queue:
        for index in range(n):
            queue.publish(make_record(index))
        taken = queue.consume("doomed-reviewer", count=n)
        print(len(taken), flush=True)
        time.sleep(600)


if __name__ == "__main__":
    _publish_take_and_hang(sys.argv[1], int(sys.argv[2]))
