"""Cases come in from the case queue as consumer ``review-service-<host>`` of the ``review`` group.

At-least-once in, exactly-once in the store: a delivery is acknowledged only after its case is in
the review store, and storing is idempotent on case id, so a redelivery after a crash changes
nothing. An unreachable queue is logged and retried with backoff while the app keeps serving.

A record this version cannot read (malformed, or changed by a newer worker beyond what it can
read) is set aside: logged once with its case id and why, counted for the review page's banner, and
left pending in the queue, which offers it again after its visibility timeout: a fixed or upgraded
review service then takes it in. The rest of its batch is taken in meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from pipeline.queue import CaseQueue, UnreadableDelivery
from pipeline.retry import Backoff, ServiceThread
from pipeline.review.cases import CaseRepository
from pipeline.types import BackendUnavailable, CaseNote

log = logging.getLogger(__name__)
QueueOpener = Callable[[], CaseQueue]
# What "the queue is not there right now" looks like per backend: Redis and S3 raise
# BackendUnavailable; a SQLite queue file on a missing or locked disk raises these.
QUEUE_DOWN = (BackendUnavailable, sqlite3.OperationalError, OSError)
MIN_BACKOFF_S = 0.5


class CaseIntake:
    """A daemon thread moving cases from the queue into the review store."""

    def __init__(self, open_queue: QueueOpener, cases: CaseRepository, *, consumer: str, block_s: float,
                 max_backoff_s: float, batch: int = 50) -> None:
        self._open_queue = open_queue
        self._cases = cases
        self._consumer = consumer
        self._block_s = block_s
        self._max_backoff_s = max_backoff_s
        self._batch = batch
        self._queue: CaseQueue | None = None
        self._service: ServiceThread | None = None
        self.last_error: str | None = None  # why the queue is not being read, while it is not
        self._set_aside: dict[str, str] = {}  # case id -> why it cannot be read, since this intake started

    @property
    def set_aside(self) -> dict[str, str]:
        """Case id -> why, of the records left in the queue because this version cannot read them."""
        return dict(self._set_aside)  # a copy: the intake thread adds to it while pages read it

    def start(self) -> None:
        """Start taking cases; a no-op while already running (an app's lifespan may run more than once)."""
        if self._service is not None and not self._service.stopping.is_set():
            return
        self._service = ServiceThread("review-intake", self._turn, Backoff(MIN_BACKOFF_S, self._max_backoff_s),
                                      idle_s=0.0)
        self._service.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._service is not None and self._service.stop(timeout_s):
            self._close_queue()

    def _turn(self) -> None:
        """One read of the queue (it blocks up to ``block_s``); the service thread backs off when it raises."""
        try:
            self._queue = self._queue or self._open_queue()
            self._take(self._queue)
        except QUEUE_DOWN as exc:
            if self.last_error is None:
                log.warning("case queue unavailable, retrying with backoff: %s", exc)
            self.last_error = str(exc) or type(exc).__name__
            self._close_queue()  # reopened on the next try: a SQLite handle on a vanished file never recovers
            raise
        except Exception as exc:  # keep serving: a bad record must not end intake for all
            log.exception("case intake failed; retrying")
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        if self.last_error is not None:
            log.warning("case queue reachable again; taking cases")
            self.last_error = None

    def _close_queue(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def _take(self, queue: CaseQueue) -> None:
        for delivery in queue.consume(self._consumer, count=self._batch, block_s=self._block_s):
            if isinstance(delivery, UnreadableDelivery):
                self._set_aside_once(delivery)
                continue
            self._cases.receive(delivery.record)
            queue.ack(delivery.delivery_id)

    def _set_aside_once(self, delivery: UnreadableDelivery) -> None:
        # Once per case: the queue offers it again every visibility timeout, and one line says it all.
        if delivery.case_id not in self._set_aside:
            log.error("case %s set aside, left pending in the queue: this review service cannot read it (%s)",
                      delivery.case_id, delivery.problem)
            self._set_aside[delivery.case_id] = delivery.problem


class NotesReader:
    """Reads a case's notes (e.g. ``camera_recovered``) from the queue when a case is opened."""

    def __init__(self, open_queue: QueueOpener) -> None:
        self._open_queue = open_queue
        self._queue: CaseQueue | None = None
        self._lock = threading.Lock()

    def notes(self, case_id: str) -> list[CaseNote] | None:
        """The case's notes, or None when the queue cannot be reached now (the page says so)."""
        with self._lock:
            try:
                self._queue = self._queue or self._open_queue()
                return self._queue.notes(case_id)
            except QUEUE_DOWN as exc:
                log.warning("notes of %s unavailable: %s", case_id, exc)
                if self._queue is not None:
                    self._queue.close()
                    self._queue = None
                return None

    def close(self) -> None:
        with self._lock:
            if self._queue is not None:
                self._queue.close()
                self._queue = None
