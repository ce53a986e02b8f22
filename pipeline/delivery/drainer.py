"""The spool's drainer: delivers committed cases to the evidence store and the case queue, in order.

For each entry, the evidence files go to the store first, then the record to the queue, then the
entry leaves the spool. When delivery fails (a backend unreachable, its disk full, its database
locked) the drainer keeps the entry and retries it (and everything after it, in order) with
back-off for as long as the fault lasts. Only an entry that can never be delivered, one that cannot
be read back as a valid case or note, is set aside in the spool's ``rejected`` folder. Case ids make
each redelivery idempotent: a case already on the queue is never uploaded or published again.

A case whose clip this process is still recording waits in the spool, and so do its notes; the
cases behind it do not wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from pipeline.delivery.spool import CaseSpool, SpoolEntry, Undeliverable
from pipeline.evidence import EvidenceStore
from pipeline.queue.base import CaseQueue
from pipeline.retry import Backoff, ServiceThread
from pipeline.types import CaseNote, CaseRecord

log = logging.getLogger(__name__)

Listener = Callable[[CaseRecord, bool], None]
RETRY_WHILE_WAITED_ON_S = 1.0  # how often a drainer that someone waits on tries a failing backend


class SpoolDrainer:
    """Thread that delivers spooled cases to the evidence store and the case queue, in order."""

    def __init__(self, spool: CaseSpool, store: EvidenceStore, queue: CaseQueue, *,
                 listeners: Iterable[Listener] = (), retry_min_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self.spool = spool
        self.store = store
        self.queue = queue
        self.listeners = list(listeners)
        self.delivered = 0  # new cases published
        self.rejected = 0  # undeliverable entries set aside in ``spool.rejected``
        self.outages = 0  # times delivery started failing
        self.backend_error: str | None = None  # why delivery fails, while it does
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
        """True once every committed entry is delivered; False if ``timeout_s`` passed first.

        The caller only waits for delivery now (a replay's end, a worker's shutdown), so the
        drainer tries every :data:`RETRY_WHILE_WAITED_ON_S` instead of backing off: after an outage
        of a few seconds the back-off's next try could come 15 s after the backend is back, most of
        a shutdown's time."""
        deadline = time.monotonic() + timeout_s
        woken = time.monotonic()
        self.wake()
        with self._idle:
            while self.spool.entries():
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now - woken >= RETRY_WHILE_WAITED_ON_S:
                    woken = now
                    self.wake()
                self._idle.wait(min(deadline - now, 0.2))
        return True

    def drain_once(self) -> int:
        """Delivers entries until the spool is empty or a backend fails; returns how many went."""
        count = 0
        for entry in self.spool.deliverable():
            if entry.is_note and self.spool.holds(entry.case_id):  # its case waits for its clip
                continue
            self._deliver(entry)
            count += 1
        return count

    def _turn(self) -> None:
        try:
            self.drain_once()
        except Exception as exc:  # the entry is sound (or it would be set aside): the fault passes, it waits
            if self.backend_error is None:
                self.outages += 1
                log.warning("delivery failing, cases stay in the spool %s: %s", self.spool.root, exc)
            self.backend_error = str(exc) or repr(exc)
            raise
        self._backend_works()
        with self._idle:
            self._idle.notify_all()

    def _deliver(self, entry: SpoolEntry) -> None:
        try:
            if entry.is_note:
                self._deliver_note(entry, entry.note())
            else:
                self._deliver_case(entry, entry.record())
        except Undeliverable as exc:
            self._set_aside(entry, str(exc))

    def _set_aside(self, entry: SpoolEntry, reason: str) -> None:
        where = self.spool.reject(entry, reason)
        self.rejected += 1
        log.error("spool entry %s can never be delivered, set aside in %s (later cases go on): %s",
                  entry.path.name, where, reason)

    def _deliver_case(self, entry: SpoolEntry, record: CaseRecord) -> None:
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
        self._delivered(entry)

    def _deliver_note(self, entry: SpoolEntry, note: CaseNote) -> None:
        try:
            self.queue.add_note(note)
        except KeyError as exc:  # notes go after their case: it was set aside, so this one never goes either
            raise Undeliverable(f"its case is not on the queue: {exc}") from exc
        self._delivered(entry)

    def _delivered(self, entry: SpoolEntry) -> None:
        # The outage is over before the entry leaves: whoever sees the spool empty sees no stale error.
        self._backend_works()
        self.spool.remove(entry)

    def _backend_works(self) -> None:
        if self.backend_error is not None:
            log.warning("delivery works again: cases leave the spool %s", self.spool.root)
            self.backend_error = None
