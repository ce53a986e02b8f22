"""Per-stage time of the one per-frame path, for the stage benchmark (production passes none)."""

from __future__ import annotations

import time
from collections import defaultdict


class StageTimer:
    """Seconds per stage: each ``mark(stage)`` charges the time since the previous mark to ``stage``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def start(self) -> None:
        """Begins a new lap: what happened since the last mark is charged to no stage."""
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now
