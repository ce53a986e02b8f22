"""Waiting between tries, and the service thread every retry loop runs on.

Ingest reconnects, the spool drainer, the review intake and the forwarder all try something
again after a failure; they share one back-off (exponential with full jitter, so workers that
failed together do not come back together) and one loop that waits it out or a wake-up.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Backoff:
    """Exponential from ``min_s`` up to ``max_s``, with full jitter: each wait is uniform between
    ``min_s`` and the current ceiling."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min ({min_s}) <= max ({max_s})")
        self.min_s, self.max_s = min_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return min(self.max_s, self.min_s * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        delay = self._rng.uniform(self.min_s, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class ServiceThread:
    """A daemon thread that calls ``turn`` until stopped.

    A turn that returns is followed by a wait of ``idle_s`` (cut short by ``wake``) and resets the
    back-off; a turn that raises is followed by the back-off's next wait (cut short by ``wake``
    too). ``turn`` reports its own errors: here they are only waited out.
    """

    def __init__(self, name: str, turn: Callable[[], None], backoff: Backoff, *, idle_s: float) -> None:
        self._turn = turn
        self.backoff = backoff
        self._idle_s = idle_s
        self._wake = threading.Event()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Asks the thread to stop and waits up to ``timeout_s``; True once it has."""
        self.stopping.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._turn()
            except Exception:  # noqa: BLE001 - reported by the turn itself; here only waited out
                self._wait(self.backoff.next_delay())
                continue
            self.backoff.reset()
            self._wait(self._idle_s)

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()
