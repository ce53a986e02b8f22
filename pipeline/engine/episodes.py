"""Keeps a live camera's open episodes across a restart or a move to another worker.

Every few seconds, and when a camera leaves, its rules' episodes are snapshotted between two
batches (on the analysis thread) and stored off it; a camera added again, here or on another
worker, takes them back: the same parked car is not filed twice.
"""

from __future__ import annotations

import logging
import time

from pipeline.engine.camera import CameraPipeline
from pipeline.rules.memory import EpisodeMemory
from pipeline.types import BackendUnavailable

log = logging.getLogger(__name__)


class EpisodeKeeper:
    def __init__(self, memory: EpisodeMemory, *, every_s: float = 2.0) -> None:
        self.memory = memory
        self.every_s = every_s
        self._next = time.monotonic() + every_s

    def restore(self, camera: CameraPipeline) -> None:
        try:
            camera.rules.adopt(self.memory.load(camera.camera.id))
        except BackendUnavailable as exc:
            log.warning("camera %s: its saved episodes are out of reach (%s); starting afresh", camera.camera.id, exc)
        except ValueError as exc:  # a damaged or foreign snapshot costs the episodes, not the worker
            log.warning("camera %s: its saved episodes are unreadable (%s); starting afresh", camera.camera.id, exc)

    def due(self) -> bool:
        """True once every ``every_s`` seconds."""
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.every_s
        return True

    @staticmethod
    def snapshot(cameras: list[CameraPipeline]) -> dict[str, dict]:
        """Call between two batches: the rules must not change while they are read. A case not yet
        on the spool is saved as not filed, so whoever runs the camera next files it."""
        return {camera.camera.id: camera.rules.snapshot(camera.unfiled_case_ids()) for camera in cameras}

    def store(self, snapshots: dict[str, dict]) -> None:
        """Never raises for an unreachable store: analysis goes on, the next save tries again."""
        try:
            self.memory.save(snapshots)
        except (BackendUnavailable, OSError) as exc:
            log.warning("saving the episodes of %d camera(s) failed: %s", len(snapshots), exc)
