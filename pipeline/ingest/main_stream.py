"""A camera's main stream, recorded and never analysed: demuxed into its packet ring, decoded only
around a case (``DualRing.picture``), while the sub-stream (``detect_url``) is the one analysed.

``record`` reads one connection (or a file) packet by packet without decoding; ``RecordingSource``
is ``LiveSource`` in a record-only mode, with the same states, watchdog and reconnects;
``SubMainSource`` runs a camera's two inputs as one source, each with its own state, statistics and
clock epoch; ``Recorder`` records a file beside a replay, a few seconds ahead of the analysed one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

import av

from pipeline.config import CameraConfig
from pipeline.ingest.clip import StreamParams
from pipeline.ingest.dual import ClockedRing, DualRing
from pipeline.ingest.live import LiveSource, StateChange
from pipeline.ingest.source import (
    RealtimePace,
    SourceError,
    SourceStats,
    Timeline,
    _reason,
    is_live_url,
    open_container,
    redact,
)
from pipeline.vocabulary import CameraState

log = logging.getLogger(__name__)

FOLLOW_LEAD_S = 10.0  # a recorded file runs at most this far ahead of the analysed one (replay)


def record(url: str, *, camera_id: str, ring: ClockedRing, stats: SourceStats | None = None, loop: bool = False,
           realtime: bool = False, stop: threading.Event | None = None, origin_s: float = 0.0,
           open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
           follow: Callable[[], float | None] | None = None, lead_s: float = FOLLOW_LEAD_S) -> Iterator[float]:
    """Puts the video packets of ``url`` into ``ring`` without decoding them; yields each one's
    time. Times are placed as ``decode`` places them (``origin_s``, a clock that never goes back).

    ``stats.received`` counts packets. ``realtime`` paces a file as a live camera; ``follow`` (a
    replay) holds the file back to at most ``lead_s`` ahead of the time it returns (None: no longer
    held back). A container that fails to read raises SourceError."""
    stats = stats or SourceStats()
    stop = stop or threading.Event()
    live = is_live_url(url)
    container = open_container(url, camera_id, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    stream = container.streams.video[0]
    time_base = float(stream.time_base)
    clock = Timeline(origin_s, 1.0 / float(stream.average_rate or 25))
    params: StreamParams | None = None
    first_ts: int | None = stream.start_time
    pace = RealtimePace(stop) if realtime and not live else None
    try:
        while not stop.is_set():
            try:
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    if packet.size == 0 or (packet.dts is None and packet.pts is None):
                        continue
                    ts = packet.dts if packet.dts is not None else packet.pts
                    if first_ts is None:
                        first_ts = packet.pts if packet.pts is not None else ts
                    dts_s = clock.place((ts - first_ts) * time_base, strictly_later=False)
                    pts_s = dts_s + ((packet.pts if packet.pts is not None else ts) - ts) * time_base
                    stats.received += 1
                    stats.corrupt += packet.is_corrupt
                    stats.last_frame_wall = time.time()
                    stats.stream_s = pts_s if stats.stream_s is None else max(stats.stream_s, pts_s)
                    if pace is not None and pace.wait_until(dts_s):
                        return
                    while follow is not None and not stop.is_set():
                        leader = follow()
                        if leader is None or dts_s <= leader + lead_s:
                            break
                        stop.wait(0.02)
                    params = params or (StreamParams.from_stream(stream, packet) if packet.is_keyframe else None)
                    if params is not None:
                        ring.add(bytes(packet), pts_s=pts_s, dts_s=dts_s, keyframe=packet.is_keyframe, params=params)
                    yield pts_s
            except av.FFmpegError as exc:
                at = clock.last_s if clock.last_s is not None else origin_s
                reason = _reason(exc, False, read_timeout_s, "no data")
                raise SourceError(f"camera {camera_id}: main stream broke at {at:.1f}s of {redact(url)}: "
                                  f"{reason}") from exc
            if live or not loop:
                return
            container.seek(0)  # the next loop's timestamps jump back; the clock bridges them
    finally:
        container.close()


def _clocked(ring: ClockedRing, listener: Callable[[StateChange], None] | None) -> Callable[[StateChange], None]:
    """A state listener that starts a new clock epoch at every (re)connection and tells the ring
    whether its input delivers, before handing the change on to ``listener``."""

    def changed(change: StateChange) -> None:
        if change.new == CameraState.CONNECTING:
            ring.clock.reconnected()
        ring.set_receiving(change.new == CameraState.LIVE)
        if listener is not None:
            listener(change)

    return changed


class RecordingSource(LiveSource):
    """``LiveSource`` in record-only mode: the camera's main stream (``url``) demuxed into its ring,
    never decoded, with the same states, stall watchdog (on packets) and reconnects; it hands out
    no frames."""

    THREAD = "record"

    def __init__(self, camera: CameraConfig, ring: ClockedRing, stats: SourceStats, *, loop_files: bool,
                 stop: threading.Event, on_state: Callable[[StateChange], None] | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(camera, ring, stats, loop_files=loop_files, wake=threading.Event(), stop=stop,
                         on_state=on_state, rng=rng, url=camera.url)
        self.label = f"{camera.id} (main stream)"

    def _read(self, origin_s: float) -> Iterator[float]:
        settings = self.settings
        return record(self.url, camera_id=self.camera.id, ring=self.ring, stats=self.stats, loop=self._loop_files,
                      realtime=True, stop=self._stop, origin_s=origin_s, open_timeout_s=settings.open_timeout_s,
                      read_timeout_s=settings.read_timeout_s)

    def _deliver(self, item: float) -> None:
        pass  # the packet is in the ring already

    def take(self) -> None:
        return None


class SubMainSource(LiveSource):
    """A camera with ``detect_url``: its sub-stream decoded for analysis (this source, as
    ``LiveSource``: the camera's state, frames and ``stats``) and its main stream recorded
    (``main``, a ``RecordingSource`` with its own state, history and ``main.stats``), into the two
    sides of ``ring``. Started, stopped and joined together; ``on_state`` hears the sub-stream."""

    def __init__(self, camera: CameraConfig, ring: DualRing, stats: SourceStats, *, loop_files: bool,
                 wake: threading.Event, stop: threading.Event,
                 on_state: Callable[[StateChange], None] | None = None, rng: random.Random | None = None,
                 on_main_state: Callable[[StateChange], None] | None = None) -> None:
        if camera.detect_url is None:
            raise ValueError(f"camera {camera.id} has no detect_url")
        super().__init__(camera, ring.sub, stats, loop_files=loop_files, wake=wake, stop=stop,
                         on_state=_clocked(ring.sub, on_state), rng=rng, url=camera.detect_url)
        self.label = f"{camera.id} (sub-stream)"
        self.dual = ring
        self.main = RecordingSource(camera, ring.main, SourceStats(), loop_files=loop_files, stop=stop,
                                    on_state=_clocked(ring.main, on_main_state), rng=rng)

    def start(self) -> None:
        super().start()
        self.main.start()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        super().join(timeout)
        self.main.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class Recorder:
    """Records a video file into ``ring`` on a thread of its own, beside a replay of its sub-stream
    file: at most ``lead_s`` ahead of ``follow()`` (the analysed file's newest time) until
    ``release`` lets it run to its end."""

    def __init__(self, url: str, ring: ClockedRing, *, camera_id: str, follow: Callable[[], float | None],
                 lead_s: float = FOLLOW_LEAD_S) -> None:
        self.ring = ring
        self.stats = SourceStats()
        self.error: str | None = None
        self._url, self._camera_id, self._follow, self._lead_s = url, camera_id, follow, lead_s
        self._released = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"record-{camera_id}", daemon=True)

    def start(self) -> Recorder:
        self.ring.clock.reconnected()
        self.ring.set_receiving(True)
        self._thread.start()
        return self

    def release(self) -> None:
        """The analysed file has ended: the recording no longer waits for it."""
        self._released.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _follow_unless_released(self) -> float | None:
        return None if self._released.is_set() else self._follow()

    def _run(self) -> None:
        try:
            for _ in record(self._url, camera_id=self._camera_id, ring=self.ring, stats=self.stats, stop=self._stop,
                            follow=self._follow_unless_released, lead_s=self._lead_s):
                pass
        except SourceError as exc:
            self.error = str(exc)
            log.error("%s", exc)
        finally:
            self.ring.set_receiving(False)
