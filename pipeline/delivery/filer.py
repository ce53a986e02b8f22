"""The case filer: rendered cases onto the write-ahead spool, and from there to the backends.

A case reaches local disk before any backend is asked, so an outage of Redis or S3, or a kill of
the worker, delays a case but never loses it. A spool that cannot take a case (its disk full)
does not lose it either: the case waits in memory, and a retry with back-off commits it once the
disk has room, before any case that came after it. Once every case held so ends up on the spool,
the outage (its span and the cases that waited) is kept for ``outages_over``: the patrol files a
fault case for each camera whose cases reached review late (``pipeline/engine/faults.py``).

A case is committed at its confirmation, its clip still pending (``commit(..., pending=True)``),
and completed once the clip's post-roll is in (``complete``): from its confirmation on, a kill of
the worker delays it and may cut its clip short, but never loses it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.delivery.drainer import Listener, SpoolDrainer
from pipeline.delivery.spool import DISK_FULL, CaseSpool
from pipeline.evidence import EvidenceStore, RenderedCase
from pipeline.queue.base import CaseQueue
from pipeline.retry import Backoff, ServiceThread
from pipeline.types import BackendUnavailable, CaseNote, CaseRecord

log = logging.getLogger(__name__)


def _nothing() -> None:
    pass


@dataclass
class _Held:
    """What the spool could not take yet, with what to call once it has."""

    item: RenderedCase | CaseNote
    then: Callable[[], None] = _nothing
    pending: bool = False  # a case whose clip is still being recorded
    completes: bool = False  # a completed case, to replace its pending entry


@dataclass
class SpoolOutage:
    """A time the spool took no case (its disk full, or unwritable): from its first refusal until the
    last case held in memory meanwhile was written, and those cases."""

    path: str
    reason: str  # the spool's error when it began, e.g. "disk full at /var/spool"
    disk_full: bool
    since_wall: float
    until_wall: float = 0.0  # when the last case held meanwhile was written
    waited: dict[str, CaseRecord] = field(default_factory=dict)  # by case id, in commit order

    def hold(self, item: RenderedCase | CaseNote) -> None:
        if isinstance(item, RenderedCase):  # a note is no case; a completion's case waits for it
            self.waited.setdefault(item.case_id, item.record)


class CaseFiler:
    """Commits rendered cases to ``spool``; its drainer delivers each to ``store`` and ``queue`` and
    tells every listener ``(record, is_new)``."""

    def __init__(self, spool: CaseSpool, store: EvidenceStore, queue: CaseQueue, *,
                 listeners: Iterable[Listener] = (), retry_min_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self.spool = spool
        self.store = store
        self.queue = queue
        self.drainer = SpoolDrainer(spool, store, queue, listeners=listeners, retry_min_s=retry_min_s,
                                    retry_max_s=retry_max_s)
        self.listeners = self.drainer.listeners  # one list: listeners added later hear deliveries too
        self.spool_error: str | None = None  # why the spool takes no case, while it does not
        self.disk_full = False  # while the spool's disk is full (or over quota)
        self._held: deque[_Held] = deque()  # in commit order
        self._held_changed = threading.Condition()
        self._outage: SpoolOutage | None = None  # while cases are held
        self._outages_over: deque[SpoolOutage] = deque(maxlen=64)  # not taken by outages_over yet
        self._committer = ServiceThread("spool-committer", self._commit_held, Backoff(retry_min_s, retry_max_s),
                                        idle_s=1.0)
        self._started = False

    @property
    def held(self) -> int:
        """Cases and notes waiting in memory for the spool to take them."""
        return sum(not held.completes for held in self._held)  # a completion's case is on the spool already

    def start(self) -> CaseFiler:
        if not self._started:
            self.drainer.start()
            self._committer.start()
            self._started = True
        return self

    def needs_filing(self, case_id: str) -> bool:
        """False for a case already on the queue (its listeners hear of it again: a replay of the
        same stream, whose filed evidence and sha256s stand) or already in the spool (spooled by
        the run this one restarted; the drainer delivers it)."""
        filed = self._filed(case_id)
        if filed is not None:
            for listener in tuple(self.listeners):
                listener(filed, False)
            return False
        return not self.spool.holds(case_id)

    def commit(self, case: RenderedCase, then: Callable[[], None] = _nothing, *, pending: bool = False) -> None:
        """Puts ``case`` on the spool, then calls ``then``. If the spool cannot take it (an
        OSError: its disk full), the case is held in memory and ``then`` is called once a retry
        has put it there. A ``pending`` case waits there for ``complete``."""
        self._put(_Held(case, then, pending=pending))

    def complete(self, case: RenderedCase) -> None:
        """Replaces the pending case of the same id with ``case`` and releases it for delivery; if
        the spool cannot take it, the pending entry stays (a later process delivers it as it is)
        while a retry goes on."""
        with self._held_changed:
            for held in self._held:
                if held.pending and held.item.case_id == case.case_id:  # not on the spool yet: it goes whole
                    held.item, held.pending = case, False
                    return
        self._put(_Held(case, completes=True))

    def add_note(self, note: CaseNote) -> None:
        """Queues ``note`` behind every case committed or held before it."""
        self._put(_Held(note))

    def outages_over(self) -> list[SpoolOutage]:
        """The outages whose held cases are all on the spool now, each once, oldest first."""
        with self._held_changed:
            over = list(self._outages_over)
            self._outages_over.clear()
        return over

    def wait_delivered(self, timeout_s: float) -> bool:
        """True once every case is on the spool and delivered from it; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        self._committer.wake()
        with self._held_changed:
            if not self._held_changed.wait_for(lambda: not self._held, timeout_s):
                return False
        return self.drainer.wait_empty(max(0.0, deadline - time.monotonic()))

    def close(self, drain_timeout_s: float) -> int:
        """Delivers what it can within ``drain_timeout_s``; returns how many entries stay spooled.
        ``held`` then counts the cases that never reached the spool: they go with this process."""
        if self._started:
            self.wait_delivered(drain_timeout_s)
            self._committer.stop()
            self.drainer.stop()
        left = len(self.spool.entries())
        self.spool.close()
        self.queue.close()
        return left

    def _put(self, held: _Held) -> None:
        with self._held_changed:
            written = not self._held  # behind a held case, a later one waits its turn
            if written:
                try:
                    self._write(held)
                except OSError:
                    written = False
            if not written:
                if self._outage is None:
                    self._outage = SpoolOutage(str(self.spool.root), self.spool_error or "", self.disk_full,
                                               time.time())
                self._outage.hold(held.item)
                self._held.append(held)
        if written:
            held.then()

    def _commit_held(self) -> None:
        while True:
            with self._held_changed:
                if not self._held:
                    return
                held = self._held[0]
                self._write(held)  # an OSError leaves it first in line, tried again after the back-off
                self._held.popleft()
                if not self._held and self._outage is not None:
                    self._outage.until_wall = time.time()
                    self._outages_over.append(self._outage)
                    self._outage = None
                self._held_changed.notify_all()
            held.then()

    def _write(self, held: _Held) -> None:
        try:
            if isinstance(held.item, CaseNote):
                self.spool.add_note(held.item)
            elif held.completes:
                self.spool.complete(held.item)
            else:
                self.spool.commit(held.item, pending=held.pending)
        except OSError as exc:
            if self.spool_error is None:
                log.error("spool %s cannot take cases, holding them in memory until it can: %s", self.spool.root, exc)
            self.disk_full = exc.errno in DISK_FULL
            self.spool_error = (f"disk full at {self.spool.root}" if self.disk_full
                                else f"cannot write to {self.spool.root}: {exc.strerror or exc}")
            raise
        if self.spool_error is not None:
            log.warning("spool %s takes cases again", self.spool.root)
            self.spool_error, self.disk_full = None, False
        self.drainer.wake()

    def _filed(self, case_id: str) -> CaseRecord | None:
        try:
            return self.queue.get(case_id)
        except BackendUnavailable:  # cannot tell now; the drainer checks again before publishing
            return None
