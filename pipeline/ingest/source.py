"""Open a camera source with PyAV and decode it into analysis frames at the analysis rate."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import av

from pipeline.config import CameraConfig
from pipeline.ingest.clip import PacketRing, StreamParams
from pipeline.ingest.picture import to_bgr
from pipeline.types import Frame

log = logging.getLogger(__name__)

GRAB_TIMEOUT_S = 10.0  # how long a camera has to give one picture asked of it (a disposal's re-check)


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names the camera and the URL."""


@dataclass
class SourceStats:
    """Counters since start, written by the decode thread; readers take differences over time."""

    received: int = 0  # decoded pictures
    skipped: int = 0  # picked, but replaced by a newer one before analysis took it
    analysed: int = 0
    corrupt: int = 0  # packets the decoder rejected or the demuxer flagged corrupt, pictures flagged corrupt
    resync_skipped: int = 0  # packets not decoded while waiting for a keyframe after a corrupt one
    reconnects: int = 0  # reconnect attempts of a live source
    stalls: int = 0  # times a connected live source stopped delivering pictures (see LiveSource)
    decode_s: float = 0.0  # seconds spent decoding and converting pictures: decode_s / received per frame
    stream_s: float | None = None  # newest camera time placed (packets or pictures): where a reconnect resumes
    last_frame_wall: float | None = None
    started_wall: float = field(default_factory=time.time)


def redact(url: str) -> str:
    """The URL without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")  # as the camera file's url field tells a URL from a path


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match[1].lower() if match else None


def is_live_url(url: str) -> bool:
    return _scheme(url) in STREAM_SCHEMES


def video_path(url: str) -> Path | None:
    """The local file ``url`` names: a path, or ``file:///absolute/path``; None for any other URL."""
    scheme = _scheme(url)
    if scheme is None:
        return Path(url)
    parts = urlsplit(url)
    if scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    return None


def never_opens(url: str) -> str | None:
    """Why ``url`` can never be opened, however often it is tried: a missing video file, or a URL no camera is
    read from. None when it opens, or may: a stream that is down now may be up later."""
    if is_live_url(url):
        return None
    path = video_path(url)
    if path is None:
        # Only the scheme: the rest of the URL may hold a password.
        return (f"{_scheme(url)}:// is not a camera URL: a camera is a video file path, file:///absolute/path "
                f"or a stream ({', '.join(f'{scheme}://' for scheme in STREAM_SCHEMES)})")
    if not path.is_file():
        return f"video file not found: {path}"
    return None


def require_an_openable_camera(cameras: Sequence[tuple[Path, CameraConfig]]) -> None:
    """SourceError naming each camera file, its URL and why, when not one of ``cameras`` (with the file each
    came from) can ever be opened: a patrol of them would watch nothing, then end as if all were well."""
    reasons = [(file, camera, never_opens(camera.analysed_url)) for file, camera in cameras]
    if all(why is not None for _, _, why in reasons):
        raise SourceError("no camera can ever be opened:\n" + "\n".join(
            f"  {file}: {'detect_url' if camera.detect_url else 'url'} {redact(camera.analysed_url)}: {why}"
            for file, camera, why in reasons))


def _reason(exc: Exception, timed_out: bool, timeout_s: float, what: str) -> str:
    """Why PyAV failed, without its message (which repeats the URL, password included)."""
    if timed_out or isinstance(exc, (av.error.ExitError, av.error.TimeoutError)):
        return f"{what} in {timeout_s:g}s"
    return exc.strerror if isinstance(exc, av.FFmpegError) and exc.strerror else type(exc).__name__


def open_container(url: str, camera_id: str, *, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0):
    """PyAV input container; RTSP over TCP with socket timeouts so a dead camera cannot hang a worker.

    ``open_timeout_s`` bounds connecting and each step of reading the stream's headers (PyAV's
    interrupt callback); ``read_timeout_s`` bounds every later read, and is also RTSP's socket
    I/O timeout.
    """
    unusable = never_opens(url)
    if unusable is not None:
        raise SourceError(f"camera {camera_id}: {unusable}")
    options = {}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options = {"rtsp_transport": "tcp", "timeout": str(int(read_timeout_s * 1e6))}
    # FFmpeg's file protocol would take a file:// URL's percent escapes literally: it is handed the path.
    source = url if is_live_url(url) else str(video_path(url))
    started = time.monotonic()
    try:
        container = av.open(source, options=options, timeout=(open_timeout_s, read_timeout_s))
    except (av.FFmpegError, OSError) as exc:
        timed_out = time.monotonic() - started >= open_timeout_s and is_live_url(url)
        reason = _reason(exc, timed_out, open_timeout_s, "no answer")
        raise SourceError(f"camera {camera_id}: cannot open {redact(url)}: {reason}") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(f"camera {camera_id}: no video stream in {redact(url)}")
    return container


class RealtimePace:
    """Holds a file's pictures (or packets) back to the pace a live camera gives them: its stream
    time from the first one on, on the monotonic clock."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: float | None = None

    def wait_until(self, stream_s: float) -> bool:
        """Waits until ``stream_s`` is due; True when ``stop`` was set meanwhile."""
        if self._origin is None:
            self._origin = time.monotonic() - stream_s
        delay = self._origin + stream_s - time.monotonic()
        return delay > 0 and self._stop.wait(delay)


class FrameSampler:
    """Picks frames at ``fps`` by presentation time, whatever the source's own rate."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next_due: float | None = None

    def take(self, pts_s: float) -> bool:
        # 1 ms of slack for timestamp rounding, so 25 fps sampled at 5 fps picks every 5th frame exactly
        if self._next_due is None or pts_s >= self._next_due - 1e-3:
            due = pts_s + self.period if self._next_due is None else self._next_due + self.period
            # after a gap (stall, seek, loop) restart the grid instead of catching up with a burst
            self._next_due = due if due > pts_s else pts_s + self.period
            return True
        return False


class Timeline:
    """Maps a stream's raw timestamps onto the camera's clock, which starts at ``origin_s`` and
    never goes back. A raw time that jumps back (a file's next loop, an encoder restart, a
    transport-stream discontinuity) continues one frame after the last time placed."""

    JUMP_S = 1.0  # smaller steps back are decoder reordering, not a restart

    def __init__(self, origin_s: float, frame_s: float) -> None:
        self._shift = origin_s
        self._frame_s = frame_s
        self.last_s: float | None = None

    def place(self, raw_s: float, *, strictly_later: bool) -> float | None:
        """Camera time of ``raw_s``; None when ``strictly_later`` and it is not after the last one."""
        t = self._shift + raw_s
        if self.last_s is not None:
            if t < self.last_s - self.JUMP_S:
                self._shift += self.last_s + self._frame_s - t
                t = self.last_s + self._frame_s
            elif strictly_later and t <= self.last_s:
                return None
        self.last_s = t if self.last_s is None else max(self.last_s, t)
        return t


RESYNC_GIVE_UP_S = 10.0  # stream time without a keyframe after which decoding resumes anyway
FILE_SHORTFALL = 0.98  # a file that demuxes fewer packets than this share of its index is cut short


def decode(url: str, *, camera_id: str, analysis_fps: float, ring: PacketRing | None = None,
           stats: SourceStats | None = None, loop: bool = False, realtime: bool = False,
           stop: threading.Event | None = None, start_wall: float | None = None,
           origin_s: float = 0.0, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0) -> Iterator[Frame]:
    """Analysis frames of one source, in presentation order.

    ``pts_s`` starts at ``origin_s`` (a reconnecting camera passes where its clock stood, so
    frames and clip packets stay on one clock) and only grows (see Timeline). ``realtime`` paces
    a file as if it were a live camera. ``wall_ts`` is the decode time for live sources and paced
    files, and ``start_wall + pts_s`` for a replay run as fast as possible (so time-of-day rules
    see the scene's own clock).

    Packet loss: after a packet the decoder rejects or the demuxer flags corrupt (or a picture
    the decoder flags corrupt), the decoder is flushed and nothing is decoded until the next
    keyframe packet, so pictures smeared by missing references are never analysed
    (``stats.resync_skipped`` counts the packets passed over; after ``RESYNC_GIVE_UP_S`` of
    stream time without a keyframe, decoding resumes regardless, for streams that never mark one).
    A live stream carries on. A file that held damage, or that ends short of its own index, and a
    container that fails to read (``read_timeout_s`` bounds each read) raise SourceError once
    everything decodable before has been yielded.
    """
    stats = stats or SourceStats()
    sampler = FrameSampler(analysis_fps)
    stop = stop or threading.Event()
    start_wall = time.time() if start_wall is None else start_wall
    live = is_live_url(url)
    seq = 0
    pace = RealtimePace(stop) if realtime and not live else None
    container = open_container(url, camera_id, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    stream = container.streams.video[0]
    # One decoding thread per camera: cameras already decode side by side, and FFmpeg's frame
    # threads cost 20% more CPU per picture (parking-lot video 0.57 vs 0.48 ms, 1080p street 2.0
    # vs 1.65 ms) and a picture of latency per thread, to speed up only what is fast enough
    # already (one thread decodes the 1080p street at 600 frames/s).
    stream.codec_context.thread_count = 1
    codec = stream.codec_context
    time_base = float(stream.time_base)
    frame_s = 1.0 / float(stream.average_rate or 25)
    # packets (decode order) and pictures (presentation order) each keep a clock, bridged alike
    packet_clock, picture_clock = Timeline(origin_s, frame_s), Timeline(origin_s, frame_s)
    params: StreamParams | None = None  # one per opened stream, shared by every loop of a file
    # stream time 0 is the first picture's presentation, not the first packet's decode time
    first_ts: int | None = stream.start_time
    resync_since: float | None = None  # camera time the wait for a keyframe began; None: decoding
    damage: list[float] = []  # camera times of the damage met in this pass over a file

    def lose_sync() -> None:
        nonlocal resync_since
        stats.corrupt += 1
        at = packet_clock.last_s if packet_clock.last_s is not None else origin_s
        damage.append(at)
        if resync_since is None:
            resync_since = at
            codec.flush_buffers()  # pictures in flight may reference the lost data: drop them too

    try:
        while not stop.is_set():
            packets = 0
            damage.clear()
            try:
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    # the demuxer ends with an empty packet that flushes the decoder's last pictures
                    has_data = packet.size > 0
                    packets += has_data
                    if packet.dts is not None or packet.pts is not None:
                        ts = packet.dts if packet.dts is not None else packet.pts
                        if first_ts is None:
                            first_ts = packet.pts if packet.pts is not None else ts
                        dts_s = packet_clock.place((ts - first_ts) * time_base, strictly_later=False)
                        pts_s = dts_s + ((packet.pts if packet.pts is not None else ts) - ts) * time_base
                        stats.stream_s = pts_s if stats.stream_s is None else max(stats.stream_s, pts_s)
                        if ring is not None:
                            params = params or (StreamParams.from_stream(stream, packet) if packet.is_keyframe
                                                else None)
                            if params is not None:
                                ring.add(bytes(packet), pts_s=pts_s, dts_s=dts_s,
                                         keyframe=packet.is_keyframe, params=params)
                    if has_data and packet.is_corrupt:
                        lose_sync()
                    if resync_since is not None and has_data:
                        if packet.is_keyframe and not packet.is_corrupt:
                            resync_since = None
                        elif (packet_clock.last_s or 0.0) - resync_since > RESYNC_GIVE_UP_S:
                            log.warning("camera %s: no keyframe for %.0fs after damage; decoding on", camera_id,
                                        RESYNC_GIVE_UP_S)
                            resync_since = None
                        else:
                            stats.resync_skipped += 1
                            continue
                    started = time.perf_counter()
                    try:
                        pictures = packet.decode()
                    except av.error.InvalidDataError:
                        lose_sync()
                        continue
                    finally:
                        stats.decode_s += time.perf_counter() - started
                    for picture in pictures:
                        stats.received += 1
                        stats.last_frame_wall = time.time()
                        if picture.is_corrupt:
                            lose_sync()
                            break  # the rest of this batch came out of the same damaged state
                        if picture.pts is None or first_ts is None:
                            continue  # no timestamp: cannot be placed in stream time
                        pts_s = picture_clock.place((picture.pts - first_ts) * time_base, strictly_later=True)
                        if pts_s is None:
                            continue
                        if pace is not None and pace.wait_until(pts_s):
                            return
                        if not sampler.take(pts_s):
                            continue
                        wall = time.time() if (live or realtime) else start_wall + pts_s
                        started = time.perf_counter()
                        image = to_bgr(picture)
                        stats.decode_s += time.perf_counter() - started
                        yield Frame(camera_id, seq, pts_s, wall, image)
                        seq += 1
            except av.FFmpegError as exc:
                at = picture_clock.last_s if picture_clock.last_s is not None else origin_s
                reason = _reason(exc, False, read_timeout_s, "no data")
                raise SourceError(f"camera {camera_id}: stream broke at {at:.1f}s of {redact(url)}: {reason}") from exc
            if live:
                return
            problems = []
            if damage:
                more = f" and {len(damage) - 1} more places" if len(damage) > 1 else ""
                problems.append(f"corrupt data at {damage[0]:.1f}s{more}, skipped to the next keyframe")
            if stream.frames and packets < stream.frames * FILE_SHORTFALL:
                problems.append(f"it ends early, {packets} of {stream.frames} packets")
            if problems:
                raise SourceError(f"camera {camera_id}: video file {redact(url)} is damaged: {'; '.join(problems)}")
            if not loop:
                return
            container.seek(0)  # the next loop's timestamps jump back; the clocks bridge them
    finally:
        container.close()
