"""Case queue contract: every backend must pass the same suite (add it to ``queue_url``)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from queue_contract import make_record, publish_raw
from support import unusable_sqlite_file

from pipeline.durable import DatabaseFileError
from pipeline.queue import CaseQueue, Delivery, RedisCaseQueue, SqliteCaseQueue, UnreadableDelivery, open_queue
from pipeline.types import CaseNote, CaseRecord

Connect = Callable[..., CaseQueue]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.servers)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return request.getfixturevalue("redis_url")  # the session's redis-server, flushed
    return f"sqlite:///{tmp_path}/cases.sqlite3"


@pytest.fixture
def connect(queue_url: str) -> Iterator[Connect]:
    """Opens further handles on the same queue, as another process or a restart would."""
    opened: list[CaseQueue] = []

    def _connect(visibility_timeout_s: float = 60.0) -> CaseQueue:
        queue = open_queue(queue_url, visibility_timeout_s=visibility_timeout_s)
        opened.append(queue)
        return queue

    yield _connect
    for queue in opened:
        queue.close()


def test_record_survives_json_round_trip_exactly() -> None:
    record = make_record(3)
    assert CaseRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_newer_workers_record_reads_with_the_keys_this_version_lacks_kept(queue_url: str, connect: Connect) -> None:
    queue = connect()
    newer = {**make_record(1).to_dict(), "weather": {"rain_mm": 2.5}}  # a rolling upgrade's newer worker
    publish_raw(queue_url, newer)

    [delivery] = queue.consume("reviewer-1")

    assert delivery.record.to_dict() == newer  # kept, so it is stored and forwarded as published
    assert queue.get(newer["case_id"]) == delivery.record


def test_a_malformed_record_is_handed_out_apart_and_never_fails_its_batch(queue_url: str, connect: Connect) -> None:
    queue = connect()
    first, last = make_record(0), make_record(3)
    no_camera = {key: value for key, value in make_record(1).to_dict().items() if key != "camera_id"}
    wrong_type = {**make_record(2).to_dict(), "track_id": "seven"}
    queue.publish(first)
    publish_raw(queue_url, no_camera)
    publish_raw(queue_url, wrong_type)
    queue.publish(last)

    deliveries = queue.consume("reviewer-1", count=10)

    assert [d.record for d in deliveries if isinstance(d, Delivery)] == [first, last]
    unreadable = {d.case_id: d.problem for d in deliveries if isinstance(d, UnreadableDelivery)}
    assert unreadable.keys() == {no_camera["case_id"], wrong_type["case_id"]}
    assert "camera_id missing" in unreadable[no_camera["case_id"]]
    assert "track_id must be an integer, not 'seven'" in unreadable[wrong_type["case_id"]]
    assert queue.pending_count() == 4  # what a consumer does with an unreadable one is its own call


def test_published_record_reads_back_identical(connect: Connect) -> None:
    queue = connect()
    record = make_record(1)

    assert queue.publish(record) is True
    assert queue.get(record.case_id) == record
    assert queue.get("no-such-case") is None


def test_republishing_a_case_id_keeps_the_first_case(connect: Connect) -> None:
    queue = connect()
    original = make_record(1)
    queue.publish(original)

    assert queue.publish(replace(original, score=0.99)) is False
    assert len(queue) == queue.count() == 1
    assert queue.get(original.case_id) == original
    assert len(queue.consume("reviewer-1")) == 1


def test_acknowledged_case_is_never_redelivered(connect: Connect) -> None:
    queue = connect(visibility_timeout_s=0.1)
    records = [make_record(i) for i in range(3)]
    for record in records:
        queue.publish(record)

    deliveries = queue.consume("reviewer-1")
    assert [d.record for d in deliveries] == records
    assert [d.attempts for d in deliveries] == [1, 1, 1]
    assert queue.pending_count() == 3
    for delivery in deliveries:
        queue.ack(delivery.delivery_id)
    queue.ack(deliveries[0].delivery_id)  # a retried ack must not fail

    time.sleep(0.15)
    assert queue.consume("reviewer-2") == []
    assert queue.pending_count() == 0
    assert len(queue) == 3


def test_each_case_goes_to_only_one_consumer(connect: Connect) -> None:
    queue = connect()
    queue.publish(make_record(0))
    queue.publish(make_record(1))

    first = queue.consume("reviewer-1", count=1)
    second = queue.consume("reviewer-2", count=10)

    assert [d.record.case_id for d in first] == [make_record(0).case_id]
    assert [d.record.case_id for d in second] == [make_record(1).case_id]


def test_unacknowledged_case_is_redelivered_after_visibility_timeout(connect: Connect) -> None:
    queue = connect(visibility_timeout_s=0.2)
    record = make_record(0)
    queue.publish(record)
    [taken] = queue.consume("crashed-reviewer")

    assert queue.consume("reviewer-2") == []  # still within the timeout
    time.sleep(0.25)
    [retaken] = queue.consume("reviewer-2")

    assert retaken.delivery_id == taken.delivery_id
    assert retaken.record == record
    assert retaken.attempts == 2
    queue.ack(retaken.delivery_id)
    assert queue.pending_count() == 0


def test_blocking_consume_returns_a_case_published_meanwhile(connect: Connect) -> None:
    queue = connect()
    started = time.monotonic()
    assert queue.consume("reviewer-1", block_s=0.2) == []
    assert time.monotonic() - started >= 0.2

    publisher = threading.Timer(0.1, queue.publish, args=[make_record(0)])
    publisher.start()
    started = time.monotonic()
    deliveries = queue.consume("reviewer-1", block_s=10)
    publisher.join()

    assert [d.record for d in deliveries] == [make_record(0)]
    assert time.monotonic() - started < 2


def test_cases_and_pending_deliveries_survive_reopen(connect: Connect) -> None:
    before = connect()
    before.publish(make_record(0))
    before.publish(make_record(1))
    before.consume("reviewer-1", count=1)
    before.close()

    after = connect(visibility_timeout_s=0)
    assert len(after) == 2
    assert after.get(make_record(1).case_id) == make_record(1)
    assert after.pending_count() == 1
    deliveries = after.consume("reviewer-2")
    assert [(d.record, d.attempts) for d in deliveries] == [
        (make_record(0), 2),
        (make_record(1), 1),
    ]


def test_threads_publishing_the_same_cases_store_each_once(connect: Connect) -> None:
    queue = connect()
    records = [make_record(i) for i in range(30)]
    start = threading.Barrier(4)
    accepted: list[bool] = []

    def publish_all() -> None:
        start.wait()
        accepted.extend(queue.publish(record) for record in records)

    threads = [threading.Thread(target=publish_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert accepted.count(True) == 30
    assert len(queue) == 30
    delivered = [d.record.case_id for d in queue.consume("reviewer-1", count=100)]
    assert sorted(delivered) == sorted(r.case_id for r in records)


def test_competing_consumers_never_share_a_case(connect: Connect) -> None:
    publisher = connect()
    for index in range(40):
        publisher.publish(make_record(index))
    taken: dict[str, list[str]] = {"reviewer-1": [], "reviewer-2": []}
    handles = {name: connect() for name in taken}  # separate connections, as two processes

    def drain(name: str) -> None:
        while batch := handles[name].consume(name, count=3):
            taken[name].extend(d.record.case_id for d in batch)

    threads = [threading.Thread(target=drain, args=[name]) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not set(taken["reviewer-1"]) & set(taken["reviewer-2"])
    assert len(taken["reviewer-1"]) + len(taken["reviewer-2"]) == 40


def test_consumer_killed_before_ack_loses_nothing(queue_url: str, connect: Connect) -> None:
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("queue_contract.py")), queue_url, "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "5"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    survivor = connect(visibility_timeout_s=0)
    assert len(survivor) == 5
    assert survivor.pending_count() == 5
    deliveries = survivor.consume("reviewer-2")
    assert [d.record for d in deliveries] == [make_record(i) for i in range(5)]
    assert {d.attempts for d in deliveries} == {2}


def test_notes_stay_with_their_case_once_each(connect: Connect) -> None:
    queue = connect()
    record = make_record(0)
    first = CaseNote("N-1", record.case_id, "2024-05-01T08:30:00.000+08:00", "system", "camera_recovered", "画面恢复")
    second = replace(first, note_id="N-2", text="second")
    with pytest.raises(KeyError):
        queue.add_note(first)  # a note never outruns its case
    queue.publish(record)

    assert queue.add_note(first) is True
    assert queue.add_note(second) is True
    assert queue.add_note(replace(first, text="retried")) is False
    assert connect().notes(record.case_id) == [first, second]
    assert queue.notes(make_record(1).case_id) == []


def test_default_queue_is_sqlite_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_queue(None) as queue:
        queue.publish(make_record(0))
    assert (tmp_path / "var/queue/cases.sqlite3").is_file()


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://:secret@cache.invalid:6380/1"])
def test_redis_url_opens_the_redis_queue_without_connecting(url: str) -> None:
    started = time.monotonic()
    with open_queue(url) as queue:  # nothing listens there: opening must not care
        assert isinstance(queue, RedisCaseQueue)
        assert "secret" not in repr(queue)
    assert time.monotonic() - started < 1


def test_unusable_redis_url_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="Redis") as raised:
        open_queue("redis://:secret@cache:port/0")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("url", ["postgres://db/cases", "sqlite://", "cases.sqlite3"])
def test_unusable_url_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_queue(url)


@pytest.mark.parametrize(
    ("damage", "reason"), [("garbage", "not a SQLite database"), ("malformed", "database disk image is malformed")]
)
def test_a_file_that_is_no_usable_database_is_named_with_what_is_wrong(tmp_path: Path, damage: str,
                                                                       reason: str) -> None:
    path = unusable_sqlite_file(tmp_path / "cases.sqlite3", damage)

    with pytest.raises(DatabaseFileError) as raised:
        open_queue(f"sqlite:///{path}")

    assert str(raised.value) == f"{path}: {reason}"


def test_opening_and_reading_do_not_wait_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite3"
    record = make_record(1)
    with SqliteCaseQueue(path) as queue:
        queue.publish(record)
    other = sqlite3.connect(path, isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    claimed: list = []
    try:
        started = time.monotonic()
        # The review page opens the queue to read a case's notes: opening must not need the write lock ...
        queue = SqliteCaseQueue(path, busy_timeout_s=5)
        # ... and a claim waiting for that lock must not hold up this process's reads.
        claim = threading.Thread(target=lambda: claimed.extend(queue.consume("reviewer-1")))
        claim.start()
        time.sleep(0.3)  # the claim is waiting on the lock by now
        assert queue.get(record.case_id) == record
        assert queue.notes(record.case_id) == [] and queue.count() == 1
        assert time.monotonic() - started < 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    claim.join(10)
    queue.close()
    assert [delivery.record for delivery in claimed] == [record]
