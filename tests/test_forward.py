"""`patrol forward` against a real HTTP endpoint on loopback whose answers each test scripts.

Every test runs on both queue backends (SQLite and the session's real redis-server) and asserts
what the platform's owner sees: which POSTs arrived, with which headers and bodies, and which
cases the ``forward`` group still holds pending. Backoffs and timeouts are shrunk to keep it quick.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from queue_contract import make_record, publish_raw
from support import PATROL, REPO, free_port, wait_for

from pipeline.cli.main import main
from pipeline.queue import CaseQueue, open_queue
from pipeline.queue.forward import FORWARD_GROUP, Endpoint, Forwarder, RetryPolicy, Tally, parse_retry_after
from pipeline.types import CaseRecord

QUICK = RetryPolicy(first_s=0.02, max_s=0.1, give_up_after_s=0.3)
TOKEN = "platform-token-7"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b'{"accepted": true}'
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


@dataclass(frozen=True)
class Post:
    case_id: str  # its Idempotency-Key
    nth: int  # 1 for the first POST of this key
    headers: dict[str, str]
    raw_body: bytes
    status: int
    at: float  # time.monotonic() when it arrived

    @property
    def body(self) -> dict:
        return json.loads(self.raw_body.decode("utf-8"))


def healthy(case_id: str, nth: int) -> Answer:
    return Answer(201)


class Platform:
    """The city's case platform: ``answer(case_id, nth)`` decides each reply; every POST is kept."""

    def __init__(self) -> None:
        self.answer: Callable[[str, int], Answer] = healthy
        self.posts: list[Post] = []  # in the order their answers were decided
        self._arrivals: Counter[str] = Counter()
        self._lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                case_id = self.headers["Idempotency-Key"]
                with platform._lock:
                    platform._arrivals[case_id] += 1
                    nth = platform._arrivals[case_id]
                answer = platform.answer(case_id, nth)
                time.sleep(answer.delay_s)
                with platform._lock:
                    platform.posts.append(Post(case_id, nth, dict(self.headers), raw, answer.status, arrived))
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the forwarder timed out and hung up: the POST counts as arrived all the same

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/cases"
        # shutdown() waits for the loop's next poll: a short one keeps each test's teardown short
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="platform", daemon=True)
        self._thread.start()

    def accepted(self) -> Counter[str]:
        """Case id → number of 2xx answers given for it."""
        with self._lock:
            return Counter(post.case_id for post in self.posts if 200 <= post.status < 300)

    def posts_of(self, case_id: str) -> list[Post]:
        with self._lock:
            return [post for post in self.posts if post.case_id == case_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def platform() -> Iterator[Platform]:
    server = Platform()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.servers)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return request.getfixturevalue("redis_url")  # the session's redis-server, flushed
    return f"sqlite:///{tmp_path}/queue/cases.sqlite3"


@pytest.fixture
def opened(queue_url: str) -> Iterator[Callable[..., CaseQueue]]:
    """Opens handles on the test's queue (``group=``, ``visibility_timeout_s=``), all closed at the end."""
    queues: list[CaseQueue] = []

    def _open(**options) -> CaseQueue:
        queue = open_queue(queue_url, **options)
        queues.append(queue)
        return queue

    yield _open
    for queue in queues:
        queue.close()


def publish(opened: Callable[..., CaseQueue], count: int) -> list[CaseRecord]:
    records = [make_record(index) for index in range(count)]
    publisher = opened()
    for record in records:
        assert publisher.publish(record)
    return records


def forwarder_for(opened: Callable[..., CaseQueue], url: str, *, visibility_timeout_s: float = 60.0,
                  retry: RetryPolicy = QUICK, timeout_s: float = 2.0, lines: list[str] | None = None) -> Forwarder:
    queue = opened(group=FORWARD_GROUP, visibility_timeout_s=visibility_timeout_s)
    endpoint = Endpoint(url, token=TOKEN, timeout_s=timeout_s)
    return Forwarder(queue, endpoint, consumer="forward-test", retry=retry,
                     print_line=(lines.append if lines is not None else lambda line: None))


def pending_of_forward_group(opened: Callable[..., CaseQueue]) -> int:
    return opened(group=FORWARD_GROUP).pending_count()


def test_a_healthy_endpoint_gets_every_case_exactly_once_as_the_queue_stores_it(opened, platform) -> None:
    records = publish(opened, 5)
    lines: list[str] = []

    tally = forwarder_for(opened, platform.url, lines=lines).run(once=True)

    assert tally == Tally(forwarded=5)
    assert platform.accepted() == Counter({record.case_id: 1 for record in records})
    by_id = {record.case_id: record for record in records}
    for post in platform.posts:
        assert post.headers["Idempotency-Key"] == post.body["case_id"]
        assert post.body == by_id[post.case_id].to_dict()  # the record, no notes: same bytes on every redelivery
        assert post.headers["Content-Type"] == "application/json; charset=utf-8"
        assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "人民路与解放路口东" in platform.posts[0].raw_body.decode("utf-8")  # UTF-8, not \\u escapes
    assert pending_of_forward_group(opened) == 0
    assert len(lines) == 5 and all("status=201 delivery=1 posts=1" in line for line in lines)

    again = forwarder_for(opened, platform.url).run(once=True)
    assert again == Tally() and len(platform.posts) == 5  # acknowledged: never offered again


def test_forwarding_leaves_the_review_groups_pending_and_unread_cases_as_they_were(opened, platform) -> None:
    records = publish(opened, 5)
    review = opened()  # the officers' group, as `patrol serve` opens it
    taken_by_officer = review.consume("officer-li", count=2)

    forwarder_for(opened, platform.url).run(once=True)

    assert len(platform.accepted()) == 5
    assert review.pending_count() == 2
    unread = review.consume("officer-wang", count=10)
    assert [d.record.case_id for d in taken_by_officer + unread] == [record.case_id for record in records]


def test_a_case_answered_503_twice_arrives_on_the_third_post_and_is_acknowledged_once(opened, platform) -> None:
    records = publish(opened, 3)
    flaky = records[1].case_id
    platform.answer = lambda case_id, nth: Answer(503, b"upstream busy") if case_id == flaky and nth <= 2 else Answer(201)
    lines: list[str] = []

    tally = forwarder_for(opened, platform.url, lines=lines).run(once=True)

    assert tally == Tally(forwarded=3)
    assert [post.status for post in platform.posts_of(flaky)] == [503, 503, 201]
    assert platform.accepted() == Counter({record.case_id: 1 for record in records})
    assert any(flaky in line and "posts=3" in line for line in lines)
    assert pending_of_forward_group(opened) == 0
    assert forwarder_for(opened, platform.url).run(once=True) == Tally()
    assert len(platform.posts_of(flaky)) == 3


def test_retry_after_is_honoured(opened, platform) -> None:
    (record,) = publish(opened, 1)
    platform.answer = lambda case_id, nth: Answer(429, headers=(("Retry-After", "1"),)) if nth == 1 else Answer(201)

    tally = forwarder_for(opened, platform.url, retry=RetryPolicy(0.02, 0.1, give_up_after_s=5)).run(once=True)

    first, second = platform.posts_of(record.case_id)
    assert tally == Tally(forwarded=1)
    assert second.at - first.at >= 0.95  # not the 20 ms its own backoff would have waited


def test_while_the_endpoint_is_down_nothing_is_acknowledged_and_afterwards_every_case_arrives(
    opened, platform, caplog: pytest.LogCaptureFixture
) -> None:
    records = publish(opened, 3)
    down = threading.Event()
    down.set()
    platform.answer = lambda case_id, nth: Answer(503, b"maintenance") if down.is_set() else Answer(201)
    forwarder = forwarder_for(opened, platform.url, visibility_timeout_s=1.0)
    running = threading.Thread(target=forwarder.run, kwargs={"poll_s": 0.1}, name="forwarder")
    running.start()
    try:
        wait_for(lambda: {post.case_id for post in platform.posts} == {r.case_id for r in records}, 10,
                 "every case tried while the endpoint is down")
        assert platform.accepted() == Counter()
        assert pending_of_forward_group(opened) == 3  # handed out, none acknowledged
        assert "left pending" in caplog.text and "HTTP 503" in caplog.text

        down.clear()
        wait_for(lambda: len(platform.accepted()) == 3, 15, "every case delivered after the endpoint came back")
    finally:
        forwarder.stop()
        running.join(10)
    assert not running.is_alive()
    assert platform.accepted() == Counter({record.case_id: 1 for record in records})
    assert pending_of_forward_group(opened) == 0


def test_connection_errors_and_timeouts_leave_cases_pending(opened, platform, caplog) -> None:
    (late,) = publish(opened, 1)
    nobody = f"http://127.0.0.1:{free_port()}/api/cases"

    assert forwarder_for(opened, nobody).run(once=True) == Tally(deferred=1)
    assert "Connection refused" in caplog.text
    assert pending_of_forward_group(opened) == 1

    # An answer slower than the timeout is tried again: the platform then sees the case twice, under one
    # Idempotency-Key and with the very same bytes, which is what lets it keep one.
    platform.answer = lambda case_id, nth: Answer(201, delay_s=0.6 if nth == 1 else 0.0)
    forwarder = forwarder_for(opened, platform.url, visibility_timeout_s=0.0, timeout_s=0.3,
                              retry=RetryPolicy(0.02, 0.1, give_up_after_s=5))
    assert forwarder.run(once=True) == Tally(forwarded=1)
    wait_for(lambda: len(platform.posts_of(late.case_id)) >= 2, 5, "the slow first answer recorded")
    posts = platform.posts_of(late.case_id)
    assert {post.raw_body for post in posts} == {posts[0].raw_body}
    assert {post.headers["Idempotency-Key"] for post in posts} == {late.case_id}
    assert pending_of_forward_group(opened) == 0


def test_an_unreadable_case_stays_pending_and_a_newer_workers_case_goes_out_as_published(
        queue_url, opened, platform, caplog) -> None:
    publish(opened, 2)
    newer = {**make_record(2).to_dict(), "weather": "rain"}  # a newer worker's, during a rolling upgrade
    broken = {**make_record(3).to_dict(), "score": "high"}
    publish_raw(queue_url, newer)
    publish_raw(queue_url, broken)

    tally = forwarder_for(opened, platform.url).run(once=True)

    assert tally == Tally(forwarded=3, unreadable=1)
    assert [post.body for post in platform.posts_of(newer["case_id"])] == [newer]
    assert platform.posts_of(broken["case_id"]) == [] and pending_of_forward_group(opened) == 1
    assert f"case {broken['case_id']} cannot be read" in caplog.text and "score must be a number" in caplog.text


def test_a_refused_case_stays_pending_without_holding_up_the_others(opened, platform, caplog) -> None:
    records = publish(opened, 4)
    refused = records[0].case_id  # first in line, so the others come after it
    platform.answer = lambda case_id, nth: (Answer(400, '{"error": "unknown camera cam-07 未登记"}'.encode())
                                            if case_id == refused else Answer(201))

    tally = forwarder_for(opened, platform.url, visibility_timeout_s=0.5).run(once=True)

    assert tally == Tally(forwarded=3, refused=1)
    assert platform.accepted() == Counter({record.case_id: 1 for record in records[1:]})
    assert pending_of_forward_group(opened) == 1
    assert f"case {refused} REFUSED" in caplog.text and "HTTP 400" in caplog.text
    assert "unknown camera cam-07 未登记" in caplog.text and "delivery 1" in caplog.text

    time.sleep(0.6)  # the visibility timeout: the queue offers the refused case again, and only it
    caplog.clear()
    assert forwarder_for(opened, platform.url, visibility_timeout_s=0.5).run(once=True) == Tally(refused=1)
    assert [post.nth for post in platform.posts_of(refused)] == [1, 2]
    assert "delivery 2" in caplog.text
    assert len(platform.posts) == 5 and pending_of_forward_group(opened) == 1


def test_a_redirect_is_a_refusal_and_never_followed(opened, platform, caplog) -> None:
    publish(opened, 1)
    platform.answer = lambda case_id, nth: Answer(308, b"", headers=(("Location", "/api/v2/cases"),))

    assert forwarder_for(opened, platform.url).run(once=True) == Tally(refused=1)
    assert len(platform.posts) == 1  # urllib would have followed it, as a GET for a 301-303
    assert "HTTP 308" in caplog.text and "redirect to /api/v2/cases" in caplog.text
    assert pending_of_forward_group(opened) == 1


def test_stop_finishes_the_post_in_flight_and_acknowledges_it(opened, platform) -> None:
    records = publish(opened, 3)
    in_flight = threading.Event()

    def slow_first(case_id: str, nth: int) -> Answer:
        in_flight.set()
        return Answer(201, delay_s=0.5)

    platform.answer = slow_first
    forwarder = forwarder_for(opened, platform.url)
    running = threading.Thread(target=forwarder.run, name="forwarder")
    running.start()
    assert in_flight.wait(5)
    forwarder.stop()
    running.join(5)

    assert not running.is_alive()
    assert forwarder.tally == Tally(forwarded=1)
    assert platform.accepted() == Counter({records[0].case_id: 1})
    assert pending_of_forward_group(opened) == 0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Wed, 01 May 2024 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


# The verb itself: options, messages, exit codes, signals.


def test_patrol_forward_once_prints_a_line_per_case_and_a_summary(
    opened, queue_url, platform, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = publish(opened, 2)
    monkeypatch.setenv("FORWARD_TOKEN", TOKEN)

    code = main(["forward", "--to", platform.url, "--queue", queue_url, "--once", "--backoff", "0.02"])

    out = capsys.readouterr().out
    assert code == 0
    assert all(f"[forward] {record.case_id} illegal_parking" in out for record in records)
    assert "forward: stopped; 2 forwarded, 0 refused, 0 deferred" in out
    assert "bearer token from $FORWARD_TOKEN" in out and TOKEN not in out
    assert {post.headers["Authorization"] for post in platform.posts} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(("options", "message"), [
    (["--to", "ftp://platform.example/cases"], "--to ftp://platform.example/cases: expected an http:// or https://"),
    (["--to", "http://user:s3cret@platform.example/cases"],
     "--to http://***@platform.example/cases: the URL must not carry credentials"),
    (["--to", "http://platform.example/", "--group", "review"], "--group review: that is the officers' group"),
    (["--to", "http://platform.example/", "--give-up-after", "300"], "--redeliver-after 300.0: must exceed"),
    (["--to", "http://platform.example/", "--timeout", "0"], "--timeout 0.0: must be more than 0"),
])
def test_bad_options_are_named(options: list[str], message: str, capsys, tmp_path: Path) -> None:
    code = main(["forward", *options, "--var", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"patrol forward: {message}" in err and "s3cret" not in err


def test_an_unreachable_queue_is_reported_at_once(capsys) -> None:
    started = time.monotonic()
    code = main(["forward", "--to", "http://127.0.0.1:9/", "--queue", f"redis://127.0.0.1:{free_port()}/0"])

    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 5
    assert "patrol forward: --queue / REDIS_URL: Redis case queue at 127.0.0.1:" in err and "unavailable" in err


def test_sigterm_finishes_the_post_in_flight_then_exits_0(opened, queue_url, platform) -> None:
    records = publish(opened, 3)
    in_flight = threading.Event()

    def slow(case_id: str, nth: int) -> Answer:
        in_flight.set()
        return Answer(201, delay_s=0.8)

    platform.answer = slow
    process = subprocess.Popen([*PATROL, "forward", "--to", platform.url,
                                "--queue", queue_url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert in_flight.wait(10), "no POST arrived"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"[forward] {records[0].case_id}" in out
    assert "forward: stopped; 1 forwarded, 0 refused, 0 deferred" in out
    assert platform.accepted() == Counter({records[0].case_id: 1})
    assert pending_of_forward_group(opened) == 0
