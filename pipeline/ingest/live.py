"""The decode thread of one camera, meant to run for weeks: reconnects, stall watchdog, states.

States of a live URL (``rtsp://`` ...)::

    connecting ──first picture──► live ──no picture for stall_after_s──► stalled
        ▲                          │ ◄─────────── pictures again ──────────┘ │
        │                          └─ read error / timeout / stream end ─────┴──► offline
        └───────────── after a backoff wait (exponential, full jitter) ───────────┘

A file plays through ``connecting → live`` and then ``ended`` at its end (unless looping) or
``failed`` when it cannot be read or is damaged; a file is never read again, so its cases are
never filed twice. Every source ends in ``stopped`` when the patrol stops it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.config import CameraConfig
from pipeline.ingest.clip import PacketRing
from pipeline.ingest.source import SourceError, SourceStats, decode, is_live_url, redact
from pipeline.retry import Backoff
from pipeline.types import Frame
from pipeline.vocabulary import CameraState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of a source's state; ``reason`` never holds a password."""

    camera_id: str
    old: CameraState
    new: CameraState
    wall_ts: float
    reason: str = ""


class LiveSource:
    """Decode thread of one camera. Keeps only the newest analysis frame: a slow analysis loop
    skips frames instead of building a backlog. A watchdog thread reports a connected stream that
    stopped delivering pictures as ``stalled`` (the decode thread may be blocked in a read then);
    the read timeout breaks the connection, and the source goes ``offline`` and reconnects.

    ``on_state`` is called on every transition, from the thread that made it (``decode-<id>``, or
    ``watchdog-<id>`` for ``stalled``), with the state lock held so that calls come in order: keep
    it short, a listener that blocks holds up that camera.
    """

    HISTORY = 256  # transitions kept in ``history``

    THREAD = "decode"  # the reading thread's name, before the camera id

    def __init__(self, camera: CameraConfig, ring: PacketRing | None, stats: SourceStats, *, loop_files: bool,
                 wake: threading.Event, stop: threading.Event,
                 on_state: Callable[[StateChange], None] | None = None, rng: random.Random | None = None,
                 url: str | None = None) -> None:
        """``url``: the input read (default: the camera's analysed one, ``detect_url`` or else ``url``);
        ``ring``: where its packets are kept for clips (None: nowhere)."""
        self.camera = camera
        self.url = url or camera.analysed_url
        self.label = camera.id  # how log lines name this input
        self.ring = ring
        self.stats = stats
        self.settings = camera.ingest
        self.live_url = is_live_url(self.url)
        self.last_error: str | None = None
        self.history: deque[StateChange] = deque(maxlen=self.HISTORY)
        self.backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s, rng)
        # live this long and the next failure waits the shortest time again; never sooner than the
        # longest wait, so a camera that flaps cannot reset its backoff faster than it grows
        self.stable_after_s = max(10.0, self.settings.reconnect_max_s)
        self._loop_files = loop_files
        self._wake = wake
        self._stop = stop
        self._on_state = on_state
        self._state = CameraState.CONNECTING
        self._state_since = time.time()
        self._state_lock = threading.RLock()
        self._latest: Frame | None = None
        self._frame_lock = threading.Lock()
        self._progress_at = time.monotonic()  # last time decoded pictures were seen to advance
        self._thread = threading.Thread(target=self._run, name=f"{self.THREAD}-{camera.id}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{camera.id}", daemon=True)

    # ---- what the patrol reads ----

    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def state_since(self) -> float:
        """Wall time (``time.time()``) the current state began."""
        return self._state_since

    @property
    def running(self) -> bool:
        """Still connecting, decoding or trying to; False once ended, failed or stopped."""
        return self._state.running

    def start(self) -> None:
        self._thread.start()
        self._watchdog.start()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._thread, self._watchdog):
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def take(self) -> Frame | None:
        """The newest analysis frame not taken yet, or None."""
        with self._frame_lock:
            frame, self._latest = self._latest, None
        return frame

    # ---- the decode thread ----

    def _run(self) -> None:
        camera, stats = self.camera, self.stats
        origin_s = 0.0  # stream time keeps growing across reconnects: one clock for dwell, ids and clips
        try:
            while not self._stop.is_set():
                self._set(CameraState.CONNECTING, "reconnecting" if self.history else "starting")
                live_since: float | None = None
                error: str | None = None
                try:
                    for frame in self._read(origin_s):
                        if self._state != CameraState.LIVE:
                            if live_since is None:
                                live_since = time.monotonic()
                            self._progress_at = time.monotonic()
                            again = self._state == CameraState.STALLED
                            self._set(CameraState.LIVE, "pictures again" if again else "receiving pictures")
                        self._deliver(frame)
                except SourceError as exc:
                    error = str(exc)
                except Exception as exc:  # a bug or an odd stream must not end a camera for good
                    log.exception("camera %s: unexpected error in the decode thread", camera.id)
                    error = self._scrub(f"camera {camera.id}: {type(exc).__name__}: {exc}")
                if stats.stream_s is not None:
                    origin_s = max(origin_s, stats.stream_s + 1.0)
                if self._stop.is_set():
                    break
                if not self.live_url:  # a broken file stays broken: reading it again would refile its cases
                    if error is not None:
                        self.last_error = error
                        log.error("%s", error)
                        self._set(CameraState.FAILED, error)
                    else:
                        self._set(CameraState.ENDED, "end of file")
                    return
                if live_since is not None and time.monotonic() - live_since >= self.stable_after_s:
                    self.backoff.reset()
                self.last_error = error or f"camera {camera.id}: stream ended ({redact(self.url)})"
                delay = self.backoff.next_delay()
                log.warning("%s; reconnecting in %.1fs", self.last_error, delay)
                self._set(CameraState.OFFLINE, f"{self.last_error}; retry in {delay:.2f}s")
                stats.reconnects += 1
                if self._stop.wait(delay):
                    break
        except BaseException as exc:  # last resort: record it, never die silently
            self.last_error = self._scrub(f"camera {camera.id}: decode thread died: {type(exc).__name__}: {exc}")
            log.exception("%s", self.last_error)
            self._set(CameraState.FAILED, self.last_error)
            return
        finally:
            if self._state not in (CameraState.ENDED, CameraState.FAILED):
                self._set(CameraState.STOPPED, "patrol stopping")

    def _read(self, origin_s: float) -> Iterator:
        """One connection's items (analysis frames), its stream time starting at ``origin_s``."""
        settings = self.settings
        return decode(self.url, camera_id=self.camera.id, analysis_fps=self.camera.analysis_fps, ring=self.ring,
                      stats=self.stats, loop=self._loop_files, realtime=True, stop=self._stop, origin_s=origin_s,
                      open_timeout_s=settings.open_timeout_s, read_timeout_s=settings.read_timeout_s)

    def _deliver(self, frame: Frame) -> None:
        with self._frame_lock:
            if self._latest is not None:
                self.stats.skipped += 1
            self._latest = frame
        self._wake.set()

    def _scrub(self, text: str) -> str:
        """Text of an unexpected error, with the camera URLs' passwords replaced."""
        for url in {self.url, self.camera.url, self.camera.detect_url} - {None}:
            text = text.replace(url, redact(url))
        return text

    # ---- the watchdog thread ----

    def _watch(self) -> None:
        stall_after_s = self.settings.stall_after_s
        period = min(0.5, stall_after_s / 4)
        seen = self.stats.received
        while not self._stop.wait(period) and self._thread.is_alive():
            now = time.monotonic()
            if self.stats.received != seen:
                seen = self.stats.received
                self._progress_at = now
                continue
            with self._state_lock:
                if self._state == CameraState.LIVE and now - self._progress_at >= stall_after_s:
                    self.stats.stalls += 1
                    self._set(CameraState.STALLED, f"no picture for {now - self._progress_at:.1f}s")

    # ---- transitions ----

    def _set(self, new: CameraState, reason: str = "") -> None:
        with self._state_lock:
            old = self._state
            if old == new:
                return
            change = StateChange(self.camera.id, old, new, time.time(), reason)
            self._state, self._state_since = new, change.wall_ts
            self.history.append(change)
            log.info("camera %s: %s -> %s (%s)", self.label, old, new, reason)
            if self._on_state is not None:
                try:
                    self._on_state(change)
                except Exception:  # a listener's bug must not stop the camera
                    log.exception("camera %s: state listener failed", self.camera.id)
