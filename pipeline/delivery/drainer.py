"""The spool's drainer: delivers committed cases to the evidence store and the case queue, in order.

For each entry, the evidence files go to the store first, then the record to the queue, then the
entry leaves the spool. When a backend is unreachable the drainer keeps the entry and retries it
(and everything after it, in order) with back-off. Case ids make each redelivery idempotent: a
case already on the queue is never uploaded or published again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from pipeline.delivery.spool import CaseSpool, SpoolEntry
from pipeline.evidence import EvidenceStore
from pipeline.queue.base import CaseQueue
from pipeline.retry import Backoff, ServiceThread
from pipeline.types import BackendUnavailable, CaseRecord

log = logging.getLogger(__name__)

Listener = Callable[[CaseRecord, bool], None]


class SpoolDrainer:
    """Thread that delivers spooled cases to the evidence store and the case queue, in order."""

    def __init__(self, spool: CaseSpool, store: EvidenceStore, queue: CaseQueue, *,
                 listeners: Iterable[Listener] = (), retry_min_s: float = 0.5, retry_max_s: float = 30.0,
                 max_failures: int = 5) -> None:
        self.spool = spool
        self.store = store
        self.queue = queue
        self.listeners = list(listeners)
        self.delivered = 0  # new cases published
        self.outages = 0  # times a backend became unreachable
        self.backend_error: str | None = None  # set while a backend is unreachable
        self._max_failures = max_failures
        self._failures: dict[str, int] = {}
        self._idle = threading.Condition()
        self._service = ServiceThread("spool-drainer", self._turn, Backoff(retry_min_s, retry_max_s), idle_s=1.0)

    def start(self) -> SpoolDrainer:
        self._service.start()
        return self

    def wake(self) -> None:
        self._service.wake()

    def stop(self) -> None:
        self._service.stop()

    def wait_empty(self, timeout_s: float) -> bool:
        """True once every committed entry is delivered; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        self.wake()
        with self._idle:
            while self.spool.entries():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.2))
        return True

    def drain_once(self) -> int:
        """Delivers entries until the spool is empty or a backend fails; returns how many went."""
        count = 0
        for entry in self.spool.entries():
            self._deliver(entry)
            count += 1
        return count

    def _turn(self) -> None:
        try:
            self.drain_once()
        except BackendUnavailable as exc:
            if self.backend_error is None:
                self.outages += 1
                log.warning("backend unavailable, cases stay in the spool %s: %s", self.spool.root, exc)
            self.backend_error = str(exc)
            raise
        except Exception as exc:  # a backend refusing one entry (bad key, permissions)
            self._refused(exc)
            raise
        if self.backend_error is not None:
            log.warning("backends reachable again; spool delivered")
            self.backend_error = None
        with self._idle:
            self._idle.notify_all()

    def _refused(self, exc: Exception) -> None:
        entries = self.spool.entries()
        if not entries:
            return
        head = entries[0]
        failures = self._failures[head.path.name] = self._failures.get(head.path.name, 0) + 1
        log.error("delivering spooled case %s failed (%d/%d): %s", head.case_id, failures, self._max_failures, exc)
        if failures >= self._max_failures:
            where = self.spool.reject(head, f"refused {failures} times, last: {exc!r}")
            log.error("spooled case %s set aside in %s; later cases go on", head.case_id, where)
            del self._failures[head.path.name]

    def _deliver(self, entry: SpoolEntry) -> None:
        if entry.is_note:
            self._deliver_note(entry)
            return
        try:
            record = entry.record()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            where = self.spool.reject(entry, f"unreadable record: {exc}")
            log.error("spool entry %s is unreadable and was set aside in %s: %s", entry.path.name, where, exc)
            return
        filed = self.queue.get(record.case_id)
        if filed is None:
            files = entry.files
            for item in record.evidence.values():
                # the evidence lands before the case that points at it is published
                self.store.put(item.key, files.get(item.key), item.content_type)
            is_new = self.queue.publish(record)
        else:  # filed before, e.g. by the run this one restarted: its evidence and sha256s stand
            record, is_new = filed, False
        # Listeners hear of the case before it leaves the spool: whoever waits for an empty spool
        # (a replay writing cases.jsonl, then unhooking its listener) must not miss the last one.
        for listener in tuple(self.listeners):
            try:
                listener(record, is_new)
            except Exception:  # a listener's bug must not hold back a case that is already filed
                log.exception("a listener failed on case %s", record.case_id)
        self.delivered += is_new
        self.spool.remove(entry)

    def _deliver_note(self, entry: SpoolEntry) -> None:
        try:
            self.queue.add_note(entry.note())
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable, or its case was set aside
            where = self.spool.reject(entry, f"undeliverable note: {exc}")
            log.error("spooled note %s set aside in %s: %s", entry.path.name, where, exc)
            return
        self.spool.remove(entry)
