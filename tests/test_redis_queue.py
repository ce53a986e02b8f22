"""What only the Redis case queue does: outlive a crashed or stopped server, trim, reclaim, its key layout.

The behaviour it shares with SQLite is in the contract suite (test_queue.py, param ``redis``).
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fixture_redis import RedisServer
from queue_contract import make_record

from pipeline.queue import RedisCaseQueue
from pipeline.types import BackendUnavailable

pytestmark = pytest.mark.servers  # every test here talks to a real redis-server

PASSWORD = "s3cret"
QUICK_S = 2.0  # an outage must be reported in about this long, not after a pile of retries


@pytest.fixture
def opened() -> Iterator[Callable[..., RedisCaseQueue]]:
    queues: list[RedisCaseQueue] = []

    def _open(url: str, **options) -> RedisCaseQueue:
        queue = RedisCaseQueue(url, **options)
        queues.append(queue)
        return queue

    yield _open
    for queue in queues:
        queue.close()


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server with ``requirepass``, so tests can stop it and look for the password."""
    server = RedisServer(tmp_path / "redis-locked", password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


def assert_unavailable_quickly(call: Callable[[], object], operation: str, where: str) -> BackendUnavailable:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        call()
    assert time.monotonic() - started < QUICK_S, f"{operation} took {time.monotonic() - started:.1f}s to fail"
    message = str(raised.value)
    assert where in message and operation in message, message
    everything = "".join(traceback.format_exception(raised.value))  # the chained redis error included
    assert PASSWORD not in everything
    return raised.value


def test_sigkilled_server_keeps_every_case_and_pending_delivery(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    worker = opened(redis_url, visibility_timeout_s=0.5)
    records = [make_record(i) for i in range(5)]
    assert all(worker.publish(record) for record in records)
    taken = worker.consume("reviewer-1", count=3)
    worker.ack(taken[0].delivery_id)  # reviewer-1 finished one, still holds two, two are unread

    redis_server.kill()
    redis_server.start()

    # The worker that kept running retries a publish the crash interrupted: still no second case.
    assert worker.publish(replace(records[2], score=0.99)) is False
    assert worker.count() == 5
    assert [worker.get(r.case_id) for r in records] == records
    assert worker.pending_count() == 2

    reviewer = opened(redis_url, visibility_timeout_s=0.5)
    fresh = reviewer.consume("reviewer-2")
    assert [(d.record, d.attempts) for d in fresh] == [(records[3], 1), (records[4], 1)]
    for delivery in fresh:
        reviewer.ack(delivery.delivery_id)
    time.sleep(0.55)
    retaken = reviewer.consume("reviewer-2")
    assert [(d.record, d.attempts) for d in retaken] == [(records[1], 2), (records[2], 2)]
    assert [d.delivery_id for d in retaken] == [d.delivery_id for d in taken[1:]]
    for delivery in retaken:
        reviewer.ack(delivery.delivery_id)
    assert reviewer.pending_count() == 0
    assert reviewer.consume("reviewer-2", block_s=0.6) == []  # the acknowledged one stays done


def test_stopped_server_raises_backend_unavailable_quickly_without_the_password(
    locked_server: RedisServer, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(locked_server.url, visibility_timeout_s=60)
    assert locked_server.url.startswith(f"redis://:{PASSWORD}@")
    queue.publish(make_record(0))
    [delivery] = queue.consume("reviewer-1")

    locked_server.stop()
    where = f"127.0.0.1:{locked_server.port}"
    assert_unavailable_quickly(lambda: queue.publish(make_record(1)), "publish", where)
    assert_unavailable_quickly(lambda: queue.consume("reviewer-1", block_s=5), "consume", where)
    assert_unavailable_quickly(lambda: queue.get(make_record(0).case_id), "get", where)
    assert_unavailable_quickly(lambda: queue.ack(delivery.delivery_id), "ack", where)
    assert_unavailable_quickly(queue.count, "count", where)
    assert_unavailable_quickly(queue.pending_count, "pending_count", where)
    assert_unavailable_quickly(lambda: queue.trim(0), "trim", where)

    # Back again: the same object carries on, nothing reopened, nothing lost.
    locked_server.start()
    assert queue.publish(make_record(1)) is True
    assert queue.get(make_record(0).case_id) == make_record(0)
    assert queue.pending_count() == 1
    assert [d.record for d in queue.consume("reviewer-1")] == [make_record(1)]
    queue.ack(delivery.delivery_id)
    assert queue.pending_count() == 1


def test_queue_opened_while_redis_is_down_works_once_it_is_up(
    locked_server: RedisServer, opened: Callable[..., RedisCaseQueue]
) -> None:
    locked_server.stop()
    started = time.monotonic()
    queue = opened(locked_server.url)  # a worker starting during an outage spools locally meanwhile
    assert time.monotonic() - started < 0.5
    assert_unavailable_quickly(lambda: queue.publish(make_record(0)), "publish", f"127.0.0.1:{locked_server.port}")

    locked_server.start()
    assert queue.publish(make_record(0)) is True
    assert [d.record for d in opened(locked_server.url).consume("reviewer-1")] == [make_record(0)]


def test_wrong_password_is_backend_unavailable_and_not_echoed(
    locked_server: RedisServer, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(f"redis://:wrong-{PASSWORD}@127.0.0.1:{locked_server.port}/0")
    error = assert_unavailable_quickly(lambda: queue.publish(make_record(0)), "publish", "127.0.0.1")
    assert "wrong-" not in str(error)
    assert "AuthenticationError" in str(error)


def test_hung_server_is_reported_after_the_socket_timeout(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(redis_url, socket_timeout_s=0.5)
    queue.publish(make_record(0))
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="get.*TimeoutError"):
            queue.get(make_record(0).case_id)
        assert time.monotonic() - started < 1.5  # one socket timeout: timeouts are not retried
    finally:
        redis_server.resume()
    assert queue.get(make_record(0).case_id) == make_record(0)


def test_blocking_longer_than_the_socket_timeout_is_not_an_outage(
    redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(redis_url, socket_timeout_s=0.4)
    started = time.monotonic()
    assert queue.consume("reviewer-1", block_s=1.0) == []
    assert 1.0 <= time.monotonic() - started < 2.0


def test_dead_consumers_cases_go_to_a_waiting_one_after_the_visibility_timeout(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    doomed = opened(redis_url, visibility_timeout_s=0.5)
    for index in range(3):
        doomed.publish(make_record(index))
    taken = doomed.consume("doomed-reviewer", count=2)
    doomed.close()  # dies holding two deliveries

    survivor = opened(redis_url, visibility_timeout_s=0.5)
    [unread] = survivor.consume("reviewer-2")
    assert (unread.record, unread.attempts) == (make_record(2), 1)
    survivor.ack(unread.delivery_id)
    started = time.monotonic()
    reclaimed = survivor.consume("reviewer-2", count=10, block_s=5)  # waits, then XAUTOCLAIM hands them over
    waited = time.monotonic() - started

    assert [(d.record, d.attempts) for d in reclaimed] == [(make_record(0), 2), (make_record(1), 2)]
    assert [d.delivery_id for d in reclaimed] == [d.delivery_id for d in taken]
    assert 0.3 <= waited < 2.0
    with contextlib.closing(redis_server.client()) as client:
        holders = client.xpending_range("patrol:cases", "review", "-", "+", 10)
    assert [(p["consumer"], p["times_delivered"]) for p in holders] == [("reviewer-2", 2), ("reviewer-2", 2)]
    assert survivor.pending_count() == 2


def test_trim_keeps_pending_and_unread_entries_and_every_record(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(redis_url)
    audit = opened(redis_url, group="audit")  # a second group that has read nothing yet
    records = [make_record(i) for i in range(6)]
    for record in records:
        queue.publish(record)
    first, second, third = queue.consume("reviewer-1", count=3)
    queue.ack(second.delivery_id)
    queue.ack(third.delivery_id)

    def stream_ids() -> list[str]:
        with contextlib.closing(redis_server.client()) as client:
            return [entry_id for entry_id, _ in client.xrange("patrol:cases")]

    all_ids = stream_ids()
    assert queue.trim(0) == 0  # audit has read nothing
    [*seen] = audit.consume("auditor", count=4)
    for delivery in seen:
        audit.ack(delivery.delivery_id)
    assert queue.trim(0) == 0  # review still holds the first entry
    queue.ack(first.delivery_id)
    assert queue.trim(3600) == 0  # nothing is an hour old
    assert queue.trim(0) == 3  # review has read three, audit four: the fourth is unread by review
    assert stream_ids() == all_ids[3:]

    assert queue.count() == 6
    assert [queue.get(r.case_id) for r in records] == records  # trimmed cases stay readable
    assert queue.publish(records[0]) is False  # and a trimmed case is still not filed twice
    assert [d.record for d in queue.consume("reviewer-1")] == records[3:]
    assert [d.record for d in audit.consume("auditor")] == records[4:]


def test_stream_entries_and_index_follow_the_documented_layout(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(redis_url)
    record = make_record(0)
    queue.publish(record)
    [delivery] = queue.consume("reviewer-1")

    with contextlib.closing(redis_server.client()) as client:
        [(entry_id, fields)] = client.xrange("patrol:cases")
        assert client.hget("patrol:cases:ids", record.case_id) == entry_id == delivery.delivery_id
        raw = client.hget("patrol:cases:records", record.case_id)
    assert fields == {"case_id": record.case_id, "record": raw}
    assert raw == json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True)
    assert "机动车乱停放" in raw  # UTF-8 as is, readable by any other Redis client


def test_group_lost_with_the_data_is_created_again(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue]
) -> None:
    queue = opened(redis_url)
    queue.publish(make_record(0))
    assert len(queue.consume("reviewer-1")) == 1
    redis_server.flushall()  # a server rebuilt without its data

    assert queue.pending_count() == 0
    queue.publish(make_record(1))
    assert [d.record for d in queue.consume("reviewer-1")] == [make_record(1)]


def test_closed_queue_refuses_work(redis_url: str) -> None:
    queue = RedisCaseQueue(redis_url)
    queue.close()
    queue.close()
    with pytest.raises(ValueError, match="closed"):
        queue.publish(make_record(0))


def test_pending_entry_deleted_behind_the_queues_back_is_dropped_not_fatal(
    redis_server: RedisServer, redis_url: str, opened: Callable[..., RedisCaseQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = opened(redis_url, visibility_timeout_s=0)
    queue.publish(make_record(0))
    queue.publish(make_record(1))
    [gone, kept] = queue.consume("reviewer-1")
    with contextlib.closing(redis_server.client()) as client:
        client.xdel("patrol:cases", gone.delivery_id)  # e.g. an operator's XTRIM MAXLEN

    # XAUTOCLAIM reports the deleted id in its third element and drops it from the pending list.
    assert [(d.delivery_id, d.attempts) for d in queue.consume("reviewer-2")] == [(kept.delivery_id, 2)]
    assert gone.delivery_id in caplog.text
    assert queue.pending_count() == 1
    assert queue.get(make_record(0).case_id) == make_record(0)
