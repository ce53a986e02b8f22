"""Per-stage time of the one per-frame path, for the stage benchmark (production passes none)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable


class StageTimer:
    """Seconds per stage: each ``mark(stage)`` charges the time since the previous mark to ``stage``,
    on ``clock`` (wall time by default; ``time.process_time`` gives the core time of every thread)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._clock = clock
        self._last = clock()

    def start(self) -> None:
        """Begins a new lap: what happened since the last mark is charged to no stage."""
        self._last = self._clock()

    def mark(self, stage: str) -> None:
        now = self._clock()
        self.seconds[stage] += now - self._last
        self._last = now
