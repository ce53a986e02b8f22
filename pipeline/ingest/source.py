"""Open a camera source with PyAV and decode it into analysis frames at the analysis rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av

from pipeline.ingest.clip import PacketRing, StreamParams
from pipeline.types import Frame

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names the camera and the URL."""


@dataclass
class SourceStats:
    """Counters since start, written by the decode thread; readers take differences over time."""

    received: int = 0  # decoded pictures
    sampled: int = 0  # picked at the analysis rate
    skipped: int = 0  # picked, but replaced by a newer one before analysis took it
    analysed: int = 0
    corrupt: int = 0  # packets the decoder rejected
    reconnects: int = 0
    last_frame_wall: float | None = None
    started_wall: float = field(default_factory=time.time)


def is_live_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}


def open_container(url: str, camera_id: str, *, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0):
    """PyAV input container; RTSP over TCP with socket timeouts so a dead camera cannot hang a worker."""
    options = {}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options = {"rtsp_transport": "tcp", "timeout": str(int(read_timeout_s * 1e6))}
    elif not is_live_url(url) and not Path(url).is_file():
        raise SourceError(f"camera {camera_id}: video file not found: {url}")
    try:
        container = av.open(url, options=options, timeout=(open_timeout_s, read_timeout_s))
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"camera {camera_id}: cannot open {url}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(f"camera {camera_id}: no video stream in {url}")
    return container


class FrameSampler:
    """Picks frames at ``fps`` by presentation time, whatever the source's own rate."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next_due: float | None = None

    def take(self, pts_s: float) -> bool:
        # half a source frame of slack, so 25 fps sampled at 5 fps picks every 5th frame exactly
        if self._next_due is None or pts_s >= self._next_due - 1e-3:
            due = pts_s + self.period if self._next_due is None else self._next_due + self.period
            # after a gap (stall, seek, loop) restart the grid instead of catching up with a burst
            self._next_due = due if due > pts_s else pts_s + self.period
            return True
        return False


def decode(url: str, *, camera_id: str, analysis_fps: float, ring: PacketRing | None = None,
           stats: SourceStats | None = None, loop: bool = False, realtime: bool = False,
           stop: threading.Event | None = None, start_wall: float | None = None) -> Iterator[Frame]:
    """Analysis frames of one source, in presentation order.

    ``pts_s`` starts at 0 and keeps growing across loops of a file. ``realtime`` paces a file as
    if it were a live camera. ``wall_ts`` is the decode time for live sources and paced files,
    and ``start_wall + pts_s`` for a replay run as fast as possible (so time-of-day rules see the
    scene's own clock). Corrupt packets are counted and skipped; a broken container raises
    SourceError after everything decoded so far has been yielded.
    """
    stats = stats or SourceStats()
    sampler = FrameSampler(analysis_fps)
    stop = stop or threading.Event()
    start_wall = time.time() if start_wall is None else start_wall
    live = is_live_url(url)
    seq = 0
    offset_s = 0.0
    pace_origin: float | None = None
    container = open_container(url, camera_id)
    container.streams.video[0].thread_type = "AUTO"
    try:
        while not stop.is_set():
            stream = container.streams.video[0]
            params: StreamParams | None = None
            time_base = float(stream.time_base)
            frame_s = 1.0 / float(stream.average_rate or 25)
            # stream time 0 is the first picture's presentation, not the first packet's decode time
            first_ts: int | None = stream.start_time
            last_pts_s = offset_s
            try:
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    # the demuxer ends with an empty packet that flushes the decoder's last pictures
                    flush = packet.dts is None and packet.pts is None
                    ts = packet.dts if packet.dts is not None else packet.pts
                    if first_ts is None and not flush:
                        first_ts = packet.pts if packet.pts is not None else ts
                    if ring is not None and params is None and packet.is_keyframe:
                        params = StreamParams.from_stream(stream, packet)
                    if ring is not None and params is not None and not flush:
                        pts = packet.pts if packet.pts is not None else ts
                        ring.add(bytes(packet), pts_s=offset_s + (pts - first_ts) * time_base,
                                 dts_s=offset_s + (ts - first_ts) * time_base, keyframe=packet.is_keyframe,
                                 params=params)
                    try:
                        pictures = packet.decode()
                    except av.error.InvalidDataError:
                        stats.corrupt += 1
                        continue
                    for picture in pictures:
                        stats.received += 1
                        stats.last_frame_wall = time.time()
                        if picture.pts is None or first_ts is None:
                            continue  # no timestamp: cannot be placed in stream time
                        pts = picture.pts
                        pts_s = offset_s + max(0.0, (pts - first_ts) * time_base)
                        last_pts_s = max(last_pts_s, pts_s)
                        if realtime and not live:
                            if pace_origin is None:
                                pace_origin = time.monotonic() - pts_s
                            delay = pace_origin + pts_s - time.monotonic()
                            if delay > 0 and stop.wait(delay):
                                return
                        if not sampler.take(pts_s):
                            continue
                        stats.sampled += 1
                        wall = time.time() if (live or realtime) else start_wall + pts_s
                        yield Frame(camera_id, seq, pts_s, wall, picture.to_ndarray(format="bgr24"))
                        seq += 1
            except av.FFmpegError as exc:
                raise SourceError(f"camera {camera_id}: stream broke after {last_pts_s:.1f}s of {url}: {exc}") from exc
            if not loop or live:
                return
            offset_s = last_pts_s + frame_s
            container.seek(0)
    finally:
        container.close()
