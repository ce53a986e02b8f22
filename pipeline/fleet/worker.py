"""A fleet worker: takes its fair share of the cameras by lease and runs them on its Patrol.

Every ``ttl/3`` seconds, on its own thread, it renews its leases (only while the patrol's
inference loop is moving: a hung worker lets its cameras go), announces itself with its capacity,
computes every worker's fair share from the registry, gives back cameras above its share (after
their episodes are saved, so the next worker continues them) and takes free ones up to it.
Redis being away changes nothing the worker watches: it keeps its cameras and tries again. When it
is back with leases lost (the outage outlasted the TTL, or Redis restarted empty), every worker
first re-claims what it still runs and only then shares: see ``SETTLE_PERIODS``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol

import numpy as np

from pipeline.config import CameraConfig
from pipeline.detect import FrameDetector
from pipeline.types import BackendUnavailable

from .leases import LeaseBoard
from .shares import fair_shares

log = logging.getLogger(__name__)

HAND_OVER_TIMEOUT_S = 30.0
LOAD_TARGET = 0.6  # of the measured network throughput; decoding and the rest need the remainder
# After Redis lost leases, a free camera may still run on a worker that has not made its next pass
# (at most one period away). Taking it then would start it twice, and the taker, adopting an episode
# snapshot older than the outage, would file the same parked car again. So nobody shares for this
# many periods after it saw such a loss; by then every live worker has re-claimed its leases.
SETTLE_PERIODS = 2


def measure_capacity(detector: FrameDetector, cameras: list[CameraConfig], *, seconds: float = 3.0) -> int:
    """How many of these cameras this machine can analyse: the detector's throughput on batches
    of 1280x720 frames over ``seconds``, at ``LOAD_TARGET`` of it, divided by the cameras' mean
    analysis rate. At least 1."""
    frames = [np.zeros((720, 1280, 3), np.uint8)] * 4
    detector.detect(frames[:1])  # the first run allocates; it is not throughput
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        detector.detect(frames)
        done += len(frames)
    per_s = done / (time.perf_counter() - started)
    mean_fps = sum(c.analysis_fps for c in cameras) / len(cameras)
    return max(1, int(per_s * LOAD_TARGET / mean_fps))


class CameraHost(Protocol):
    """What a fleet worker needs of the patrol it runs (``pipeline.engine.Patrol`` is one)."""

    loop_tick: float  # time.monotonic() of the inference loop's last pass: leases renew only while it moves

    def add_camera(self, camera: CameraConfig) -> Future: ...

    def remove_camera(self, camera_id: str, *, save_episodes: bool = True) -> Future: ...

    def run(self, duration_s: float | None = None) -> None: ...


class FleetWorker:
    def __init__(self, patrol: CameraHost, cameras: list[CameraConfig], board: LeaseBoard, capacity: int, *,
                 print_line: Callable[[str], None] = print) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 camera, not {capacity}")
        self.patrol = patrol
        self.cameras = {camera.id: camera for camera in cameras}
        self.board = board
        self.capacity = capacity
        self.print_line = print_line
        self.period_s = board.ttl_ms / 3000
        self.held: list[str] = []  # in the order taken; the newest are given back first
        self._redis_was_away = False
        self._announced = False
        self._settled_at = 0.0  # time.monotonic() from which this worker may share again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-leases", daemon=True)
        # the worker's own order of preference, so workers starting together reach for different cameras
        self._preference = sorted(self.cameras, key=lambda c: hashlib.sha1(f"{board.worker_id}/{c}".encode()).digest())

    def run(self, duration_s: float | None = None) -> None:
        """Runs the patrol until it stops; then gives every lease back, episodes saved, so the other
        workers take the cameras at once instead of after a TTL."""
        self._thread.start()
        try:
            self.patrol.run(duration_s)
        finally:
            self._stop.set()
            self._thread.join()
            self._give_back_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except BackendUnavailable as exc:
                self._redis_was_away = True
                log.warning("fleet: %s; keeping the %d camera(s) held", exc, len(self.held))
            except Exception:  # the lease loop must outlive a bug in one pass
                log.exception("fleet: lease pass failed")
            self._stop.wait(self.period_s)

    def step(self) -> None:
        """One pass: renew, announce, share, give back, take (unless settling after Redis lost leases)."""
        healthy = time.monotonic() - self.patrol.loop_tick < self.period_s * 1.5
        if not healthy:
            log.warning("fleet: the inference loop has not moved for %.1fs; leases are left to expire",
                        time.monotonic() - self.patrol.loop_tick)
            return
        renewal = self.board.renew(list(self.held))
        for camera_id in renewal.lost:
            self.print_line(f"[fleet] {camera_id}: lost its lease to another worker; stopped here")
            self.held.remove(camera_id)
            self._wait(self.patrol.remove_camera(camera_id, save_episodes=False), camera_id)
        known = self.board.announce(self.capacity, self.held)
        # A worker that holds nothing has no lease to find gone: its own announcement tells it
        if self._redis_was_away or renewal.reclaimed or (self._announced and not known):
            self._redis_was_away = False
            self._settled_at = time.monotonic() + SETTLE_PERIODS * self.period_s
            log.info("fleet: Redis is back (%d lease(s) re-claimed); sharing again in %.1fs",
                     len(renewal.reclaimed), SETTLE_PERIODS * self.period_s)
        self._announced = True
        if time.monotonic() < self._settled_at:
            return
        workers = self.board.workers()
        workers.setdefault(self.board.worker_id, self.capacity)
        target = fair_shares(workers, len(self.cameras))[self.board.worker_id]
        while len(self.held) > target:
            camera_id = self.held.pop()
            self._wait(self.patrol.remove_camera(camera_id), camera_id)
            self.board.release(camera_id)
            self.print_line(f"[fleet] {camera_id}: given back ({len(workers)} workers share "
                            f"{len(self.cameras)} cameras; this one's share is {target})")
        if len(self.held) < target:
            holders = self.board.holders(self._preference)
            for camera_id in (c for c in self._preference if holders[c] is None):
                if len(self.held) >= target:
                    break
                if self.board.take(camera_id):
                    self.patrol.add_camera(self.cameras[camera_id])
                    self.held.append(camera_id)
                    self.print_line(f"[fleet] {camera_id}: taken ({len(self.held)}/{target})")
            self.board.announce(self.capacity, self.held)

    def _give_back_all(self) -> None:
        """After the patrol stopped: its episodes were saved on the way out."""
        try:
            for camera_id in self.held:
                self.board.release(camera_id)
            self.board.withdraw()
            self.held = []
        except BackendUnavailable as exc:
            log.warning("fleet: could not give the leases back (%s); they expire after the TTL", exc)

    @staticmethod
    def _wait(done, camera_id: str) -> None:
        try:
            done.result(timeout=HAND_OVER_TIMEOUT_S)
        except FutureTimeout:
            log.error("fleet: handing %s over took more than %.0fs", camera_id, HAND_OVER_TIMEOUT_S)
