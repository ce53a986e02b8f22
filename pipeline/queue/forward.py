"""Forward cases to the city's case platform over HTTP: the example of a downstream consumer.

The forwarder reads the case queue as its own consumer group (``forward``), so the officers'
``review`` group neither loses nor gains a delivery, and POSTs each case to one endpoint:

- the body is the case exactly as the queue stores it (``CaseRecord.to_dict()``, sorted keys,
  UTF-8), so every redelivery of a case sends the same bytes under the same ``Idempotency-Key``
  (the case id). Notes are left out on purpose: they are added after the fact, so a body with them
  would differ between redeliveries of one key, and a note added after forwarding would never
  reach the platform anyway;
- 2xx: the delivery is acknowledged;
- connection errors, timeouts, 408, 429 and 5xx: tried again with capped exponential backoff (or
  after ``Retry-After``) for at most ``give_up_after_s``, then left pending, so the queue hands it
  out again after its visibility timeout;
- any other status (the platform refuses the case, or a redirect that is never followed: a POST
  redirected would arrive as a GET, or not at all): logged as an error with the status and the
  start of the body, left pending, and the next case is taken. A refused case comes back once per
  visibility timeout, its ``attempts`` growing, until the platform takes it; its group's pending
  list is where an operator finds it;
- a case whose record this version cannot read is logged as an error and left pending the same way,
  never posted; one a newer worker published with keys this version does not know goes out with them.

Delivery is at-least-once: a crash between the platform's 2xx and the acknowledgement sends the
case again, which the ``Idempotency-Key`` lets the platform ignore.
"""

from __future__ import annotations

import http.client
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pipeline
from pipeline.queue.base import CaseQueue, Delivery, UnreadableDelivery
from pipeline.retry import Backoff
from pipeline.types import BackendUnavailable

log = logging.getLogger(__name__)

FORWARD_GROUP = "forward"
TOKEN_ENV = "FORWARD_TOKEN"  # a bearer token never goes on the command line, where `ps` shows it
BODY_PREVIEW_BYTES = 200
# What "the queue is not there right now" looks like per backend: Redis raises BackendUnavailable,
# a SQLite file on a missing or locked disk these.
QUEUE_DOWN = (BackendUnavailable, sqlite3.OperationalError, OSError)
# What "the endpoint could not be asked" looks like: urllib's URLError and socket timeouts are
# OSErrors; a connection dropped mid-answer raises http.client's own errors.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying one delivery while the endpoint is unavailable, and how often."""

    first_s: float = 1.0
    max_s: float = 30.0
    give_up_after_s: float = 120.0  # then the delivery is left pending for the queue to hand out again

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < first ({self.first_s}) <= max ({self.max_s})")
        if self.give_up_after_s < 0:
            raise ValueError(f"give_up_after_s must be >= 0, not {self.give_up_after_s}")

    def backoff(self) -> Backoff:
        return Backoff(self.first_s, self.max_s)


@dataclass(frozen=True, slots=True)
class Reply:
    """The endpoint's answer to one POST."""

    status: int
    body_preview: bytes  # the first BODY_PREVIEW_BYTES of the body, for the log
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def preview_text(self) -> str:
        # Platforms here answer in Chinese as often as not: the log shows the text, not byte escapes.
        return self.body_preview.decode("utf-8", "replace")

    @property
    def retryable(self) -> bool:
        """The endpoint is unavailable for now, not refusing this case."""
        return self.status in (408, 429) or 500 <= self.status < 600


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> None:
        return None  # the 3xx then surfaces as an HTTPError: a refusal, logged with its Location


class Endpoint:
    """The platform's URL; POSTs one JSON body (a case, a status change) under its ``Idempotency-Key``."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"the URL must not carry credentials; put a bearer token in ${TOKEN_ENV}")
        if timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout_s}")
        self.url = url
        # The query may carry an API key of the platform's own: logs show the URL without it.
        self.display = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
        self.timeout_s = timeout_s
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirects)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def post(self, body: dict[str, Any], idempotency_key: str) -> Reply:
        """One POST of ``body`` (sorted keys, UTF-8: the same bytes for the same body); raises one of
        ``TRANSPORT_ERRORS`` when no HTTP answer came."""
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "Idempotency-Key": idempotency_key,
            "User-Agent": f"patrol-forward/{pipeline.__version__}",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return Reply(response.status, response.read(BODY_PREVIEW_BYTES))
        except urllib.error.HTTPError as answer:  # a non-2xx answer, not a transport failure
            with answer:
                try:
                    preview = answer.read(BODY_PREVIEW_BYTES)
                except TRANSPORT_ERRORS:
                    preview = b""
                location = answer.headers.get("Location")
                if location:
                    preview = f"(redirect to {location}) ".encode() + preview
                return Reply(answer.code, preview, parse_retry_after(answer.headers.get("Retry-After")))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Outcome(StrEnum):
    FORWARDED = "forwarded"  # the platform answered 2xx; acknowledged
    REFUSED = "refused"  # the platform answered another 4xx (or 3xx); left pending
    DEFERRED = "deferred"  # the endpoint stayed unavailable, or the forwarder is stopping; left pending
    UNREADABLE = "unreadable"  # this version cannot read the case's record; left pending, never posted


@dataclass
class Tally:
    forwarded: int = 0
    refused: int = 0
    deferred: int = 0
    unreadable: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def line(self) -> str:
        return (f"forward: stopped; {self.forwarded} forwarded, {self.refused} refused, {self.deferred} deferred, "
                f"{self.unreadable} unreadable (cases not forwarded stay pending; the queue offers them again after "
                f"its visibility timeout)")


@dataclass(frozen=True, slots=True)
class Attempt:
    """How the POSTs of one body ended."""

    outcome: Outcome  # FORWARDED, REFUSED or DEFERRED
    posts: int
    reply: Reply | None  # the last answer; None when the last POST got none
    why: str  # the last failure, for the log
    stopped: bool = False  # DEFERRED because stopping was asked for while the endpoint was unavailable


def post_until_settled(endpoint: Endpoint, body: dict[str, Any], idempotency_key: str, retry: RetryPolicy,
                       stop: threading.Event, subject: str) -> Attempt:
    """POST ``body`` until the endpoint takes or refuses it, trying again while it is unavailable
    (connection errors, timeouts, 408, 429, 5xx) with backoff or after ``Retry-After``, for at most
    ``retry.give_up_after_s``; ``stop`` cuts a wait short. ``subject`` names the body in the log."""
    deadline = time.monotonic() + retry.give_up_after_s
    backoff = retry.backoff()
    posts = 0
    while True:
        posts += 1
        try:
            reply: Reply | None = endpoint.post(body, idempotency_key)
        except TRANSPORT_ERRORS as exc:
            reply, why, wait_s = None, _transport_failure(exc), None
        else:
            why = f"HTTP {reply.status} {reply.preview_text!r}"
            if reply.ok:
                return Attempt(Outcome.FORWARDED, posts, reply, "")
            if not reply.retryable:
                return Attempt(Outcome.REFUSED, posts, reply, why)
            wait_s = reply.retry_after_s
        wait_s = backoff.next_delay() if wait_s is None else wait_s
        if time.monotonic() + wait_s > deadline:
            return Attempt(Outcome.DEFERRED, posts, reply, why)
        log.info("%s: %s; POST again in %.2fs", subject, why, wait_s)
        if stop.wait(wait_s):
            return Attempt(Outcome.DEFERRED, posts, reply, why, stopped=True)


def forwarded_line(delivery: Delivery, reply: Reply, posts: int) -> str:
    record = delivery.record
    return (f"[forward] {record.case_id} {record.violation} camera={record.camera_id} status={reply.status} "
            f"delivery={delivery.attempts} posts={posts}")


class Forwarder:
    """Takes cases one at a time as ``consumer`` of ``queue``'s group and POSTs them to ``endpoint``.

    One at a time, so no delivery waits pending in this process while another one is being retried
    (it would age towards its visibility timeout without being worked on). :meth:`stop` may be
    called from any thread or a signal handler: a POST in flight is finished (and acknowledged on
    2xx), a backoff wait is cut short, then :meth:`run` returns.
    """

    def __init__(
        self,
        queue: CaseQueue,
        endpoint: Endpoint,
        *,
        consumer: str,
        retry: RetryPolicy = RetryPolicy(),
        print_line: Callable[[str], None] = lambda line: None,
    ) -> None:
        self._queue = queue
        self._endpoint = endpoint
        self._consumer = consumer
        self._retry = retry
        self._print_line = print_line
        self._stop = threading.Event()
        self.tally = Tally()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, once: bool = False, poll_s: float = 1.0) -> Tally:
        """Forward until :meth:`stop`; with ``once``, until the queue hands out nothing this run has
        not tried already (an unreachable queue then raises instead of being waited for)."""
        tried: set[str] = set()  # with once: a case back from its visibility timeout is not new
        queue_backoff = self._retry.backoff()
        while not self._stop.is_set():
            try:
                deliveries = self._queue.consume(self._consumer, count=1, block_s=0 if once else poll_s)
            except QUEUE_DOWN as exc:
                if once:
                    raise
                if queue_backoff.failures == 0:
                    log.warning("case queue unavailable, retrying with backoff: %s", exc)
                self._stop.wait(queue_backoff.next_delay())
                continue
            if queue_backoff.failures:
                log.warning("case queue reachable again; forwarding")
                queue_backoff.reset()
            if not deliveries:
                if once:
                    break
                continue
            delivery = deliveries[0]
            if once:
                if delivery.case_id in tried:
                    continue
                tried.add(delivery.case_id)
            if isinstance(delivery, UnreadableDelivery):
                log.error("case %s cannot be read by this forwarder (%s; delivery %d); left pending, it is offered "
                          "again after the visibility timeout, other cases go on",
                          delivery.case_id, delivery.problem, delivery.attempts)
                self.tally.count(Outcome.UNREADABLE)
                continue
            self.tally.count(self.forward(delivery))
        return self.tally

    def forward(self, delivery: Delivery) -> Outcome:
        """POST one delivery, retrying while the endpoint is unavailable; acknowledge it on 2xx."""
        record = delivery.record
        attempt = post_until_settled(self._endpoint, record.to_dict(), record.case_id, self._retry, self._stop,
                                     f"case {record.case_id}")
        if attempt.outcome is Outcome.FORWARDED:
            self._acknowledge(delivery)
            self._print_line(forwarded_line(delivery, attempt.reply, attempt.posts))
        elif attempt.outcome is Outcome.REFUSED:
            log.error("case %s REFUSED by %s: %s (delivery %d); left pending, it is offered again after the "
                      "visibility timeout, other cases go on",
                      record.case_id, self._endpoint.display, attempt.why, delivery.attempts)
        elif attempt.stopped:
            log.warning("case %s left pending: stopping while %s was unavailable (%s)",
                        record.case_id, self._endpoint.display, attempt.why)
        else:
            log.warning("case %s not delivered to %s after %d POST(s) over %.0fs (last: %s; delivery %d); left "
                        "pending, the queue offers it again after its visibility timeout", record.case_id,
                        self._endpoint.display, attempt.posts, self._retry.give_up_after_s, attempt.why,
                        delivery.attempts)
        return attempt.outcome

    def _acknowledge(self, delivery: Delivery) -> None:
        try:
            self._queue.ack(delivery.delivery_id)
        except QUEUE_DOWN as exc:
            log.warning("case %s reached the platform but could not be acknowledged (%s): it will be sent "
                        "again, under the same Idempotency-Key", delivery.record.case_id, exc)


def _transport_failure(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return f"{type(exc).__name__}: {reason}"
