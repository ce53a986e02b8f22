"""The case filer: rendered cases onto the write-ahead spool, and from there to the backends.

A case reaches local disk before any backend is asked, so an outage of Redis or S3, or a kill of
the worker, delays a case but never loses it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.delivery.drainer import Listener, SpoolDrainer
from pipeline.delivery.spool import CaseSpool
from pipeline.evidence import EvidenceStore, RenderedCase
from pipeline.queue.base import CaseQueue
from pipeline.types import BackendUnavailable, CaseNote, CaseRecord


class CaseFiler:
    """Commits rendered cases to ``spool``; its drainer delivers each to ``store`` and ``queue`` and
    tells every listener ``(record, is_new)``."""

    def __init__(self, spool: CaseSpool, store: EvidenceStore, queue: CaseQueue, *,
                 listeners: Iterable[Listener] = ()) -> None:
        self.spool = spool
        self.store = store
        self.queue = queue
        self.drainer = SpoolDrainer(spool, store, queue, listeners=listeners)
        self.listeners = self.drainer.listeners  # one list: listeners added later hear deliveries too
        self._started = False

    def start(self) -> CaseFiler:
        if not self._started:
            self.drainer.start()
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

    def commit(self, case: RenderedCase) -> None:
        self.spool.commit(case)
        self.drainer.wake()

    def add_note(self, note: CaseNote) -> None:
        self.spool.add_note(note)
        self.drainer.wake()

    def close(self, drain_timeout_s: float) -> int:
        """Delivers what it can within ``drain_timeout_s``; returns how many entries stay spooled."""
        if self._started:
            self.drainer.wait_empty(drain_timeout_s)
            self.drainer.stop()
        left = len(self.spool.entries())
        self.spool.close()
        self.queue.close()
        return left

    def _filed(self, case_id: str) -> CaseRecord | None:
        try:
            return self.queue.get(case_id)
        except BackendUnavailable:  # cannot tell now; the drainer checks again before publishing
            return None
