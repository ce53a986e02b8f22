"""What a camera with a sub-stream (``detect_url``) and a main stream (``url``) keeps for its evidence.

The sub-stream is decoded and analysed; the main stream is only demuxed, its packets kept. Both
rings hold their own input's packets on that input's own stream clock, each with an
:class:`~pipeline.ingest.clock.ArrivalClock` that reconciles the two (``DualRing.offset``). Around
a case the main stream's packets are decoded, from the keyframe before the moment wanted
(``DualRing.picture``), and its clip is cut from them (``DualRing.cut``); when the main stream holds
nothing of that moment (it was down), the sub-stream's packets serve instead, and the caller is
told which.

A ``DualRing`` stands where a camera's single ``PacketRing`` stands (``clip``, ``span``,
``seconds``), its times the analysed sub-stream's, so a clip cut without knowing of two inputs
still comes from the main stream when it can.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from pipeline.ingest.clip import ClipError, PacketRing, StreamParams
from pipeline.ingest.clock import ArrivalClock, ClockOffset, offset_at
from pipeline.ingest.picture import to_bgr

log = logging.getLogger(__name__)

Input = Literal["main", "sub"]
MAIN: Input = "main"
SUB: Input = "sub"
RATE_WINDOW_S = 5.0  # packets per second are counted over this long
PICTURE_TOLERANCE_S = 0.5  # the main stream's picture nearest the moment wanted is at most this far from it
MAIN_LAG_S = 1.0  # a main stream this far behind the moment a clip must show still counts as holding it
CLIPS_REMEMBERED = 256  # clips whose input is remembered, so that cutting one again keeps it


class ClockedRing(PacketRing):
    """A packet ring that notes when each packet arrived (its input's clock), the newest time held,
    and whether its input is delivering now (``receiving``, set by the reading source)."""

    def __init__(self, seconds: float = 30.0, *, arrival: bool) -> None:
        super().__init__(seconds)
        self.clock = ArrivalClock(arrival=arrival)
        self.newest_s: float | None = None
        self.receiving = False
        self._changed = threading.Condition()
        self._arrivals: deque[float] = deque()

    def add(self, data: bytes, *, pts_s: float, dts_s: float, keyframe: bool, params: StreamParams) -> None:
        super().add(data, pts_s=pts_s, dts_s=dts_s, keyframe=keyframe, params=params)
        now = time.time()
        self.clock.observe(dts_s, now)
        with self._changed:
            self.newest_s = pts_s if self.newest_s is None else max(self.newest_s, pts_s)
            self._arrivals.append(now)
            while self._arrivals[0] < now - RATE_WINDOW_S:
                self._arrivals.popleft()
            self._changed.notify_all()

    def set_receiving(self, receiving: bool) -> None:
        with self._changed:
            self.receiving = receiving
            self._changed.notify_all()

    def wait_for(self, pts_s: float, timeout_s: float) -> bool:
        """Waits, while the input is receiving and at most ``timeout_s``, until a packet of stream
        time ``pts_s`` or later is held; whether one is."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.newest_s is None or self.newest_s < pts_s:
                left = deadline - time.monotonic()
                if left <= 0 or not self.receiving:
                    return False
                self._changed.wait(left)
            return True

    def packets_fps(self, now: float | None = None) -> float:
        """Packets received per second over the last :data:`RATE_WINDOW_S`."""
        now = time.time() if now is None else now
        with self._changed:
            return sum(1 for t in self._arrivals if t > now - RATE_WINDOW_S) / RATE_WINDOW_S


@dataclass(frozen=True, slots=True, eq=False)
class MainPicture:
    """A picture of the main stream decoded for a case."""

    image: np.ndarray  # H x W x 3 BGR
    main_s: float  # its time on the main stream's clock
    sub_s: float  # the same moment on the sub-stream's (the camera's analysis) clock
    offset: ClockOffset  # the reconciliation it was found by

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


class DualRing:
    """The packets of both inputs of a camera (``main``, ``sub``) and their reconciled clocks.

    ``arrival``: the inputs are streams, reconciled on the arrival of their packets (False: video
    files, taken to start together)."""

    def __init__(self, seconds: float = 30.0, *, arrival: bool) -> None:
        self.seconds = seconds
        self.main = ClockedRing(seconds, arrival=arrival)
        self.sub = ClockedRing(seconds, arrival=arrival)
        self._chosen: OrderedDict[float, Input] = OrderedDict()  # by clip start: the input it was cut from
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        return self.main.held_bytes + self.sub.held_bytes

    @property
    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) sub-stream time held: the camera's clock."""
        return self.sub.span

    def offset(self, sub_s: float) -> ClockOffset | None:
        """The main stream's clock against the sub-stream's at ``sub_s``; None when either was
        not connected then."""
        return offset_at(self.sub.clock, self.main.clock, sub_s)

    def clip(self, start_s: float, end_s: float) -> bytes:
        """As ``PacketRing.clip``: from the main stream when it holds ``end_s`` (see ``cut``)."""
        return self.cut(start_s, end_s)[0]

    def cut(self, start_s: float, end_s: float, *, at_s: float | None = None,
            wait_s: float = 0.0) -> tuple[bytes, Input]:
        """A clip of [start_s, end_s] (sub-stream times) and the input it was cut from: the main
        stream when it holds the moment ``at_s`` (default ``end_s``; up to :data:`MAIN_LAG_S` short
        of it, the main stream's lag behind the sub-stream), else the sub-stream. A clip of the same
        start cut again (its post-roll recorded since) comes from the input it first came from, the
        main stream's ending where that stream went down, so a case's clip keeps its input.
        ``wait_s``: how long to wait for a main stream that is receiving but not at ``end_s`` yet.
        ClipError when neither holds a keyframe for it."""
        key = round(start_s, 3)
        with self._lock:
            first = self._chosen.get(key)
        clip = None if first == SUB else self._main_clip(start_s, end_s, end_s if at_s is None else at_s,
                                                          wait_s, again=first == MAIN)
        source = SUB if clip is None else MAIN
        if clip is None:
            clip = self.sub.clip(start_s, end_s)
        with self._lock:
            self._chosen.setdefault(key, source)
            while len(self._chosen) > CLIPS_REMEMBERED:
                self._chosen.popitem(last=False)
        return clip, source

    def _main_clip(self, start_s: float, end_s: float, at_s: float, wait_s: float, *, again: bool) -> bytes | None:
        offset = self.offset(at_s)
        if offset is None:
            return None
        main_at, main_start, main_end = (offset.to_main(t) for t in (at_s, start_s, end_s))
        self.main.wait_for(main_end, wait_s)
        held = self.main.gop(main_at, after_s=0.0)
        newest = self.main.newest_s
        if not held or newest is None or (not again and newest < main_at - MAIN_LAG_S):
            return None
        before = self.main.gop(main_start, after_s=0.0)
        # from the clip's start when that is of the same connection, else from the moment's keyframe
        start = main_start if before and before[0].params is held[0].params else held[0].pts_s
        try:
            return self.main.clip(start, main_end)
        except (ClipError, OSError, ValueError) as exc:
            log.warning("no main-stream clip of %.1f-%.1fs: %s", start_s, end_s, exc)
            return None

    def picture(self, sub_s: float, *, wait_s: float = 0.0) -> MainPicture | None:
        """The main stream's picture nearest sub-stream time ``sub_s``, decoded from the keyframe
        before it; None when the main stream holds nothing within :data:`PICTURE_TOLERANCE_S` of
        that moment (down then, or not there yet after ``wait_s``)."""
        offset = self.offset(sub_s)
        if offset is None:
            return None
        main_s = offset.to_main(sub_s)
        self.main.wait_for(main_s, wait_s)
        packets = self.main.gop(main_s)
        if not packets:
            return None
        found = decode_nearest(packets, main_s)
        if found is None or abs(found[0] - main_s) > PICTURE_TOLERANCE_S:
            return None
        at, image = found
        return MainPicture(image, at, offset.to_sub(at), offset)


def decode_nearest(packets: list, at_s: float) -> tuple[float, np.ndarray] | None:
    """Decodes ``packets`` (a keyframe first, in decode order, of one stream) and returns the
    picture shown nearest ``at_s``: its time and BGR image; None when nothing decodes."""
    time_base = PacketRing.TIME_BASE
    try:
        with av.open(io.BytesIO(packets[0].params.template_mp4)) as template:
            parameters = template.streams.video[0].codec_context
            codec = av.CodecContext.create(parameters.name, "r")
            codec.extradata = parameters.extradata
        codec.thread_count = 1
        best: tuple[float, av.VideoFrame] | None = None

        def consider(pictures) -> None:
            nonlocal best
            for picture in pictures:
                if picture.pts is None or picture.is_corrupt:
                    continue
                shown = float(picture.pts * time_base)
                if best is None or abs(shown - at_s) < abs(best[0] - at_s):
                    best = (shown, picture)

        for held in packets:
            packet = av.Packet(held.data)
            packet.time_base = time_base
            packet.pts, packet.dts = round(held.pts_s / time_base), round(held.dts_s / time_base)
            packet.is_keyframe = held.keyframe
            try:
                consider(codec.decode(packet))
            except av.error.InvalidDataError:
                continue  # a damaged packet: the pictures after it may still decode
        consider(codec.decode(None))
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.warning("cannot decode the main stream at %.1fs: %s", at_s, exc)
        return None
    return None if best is None else (best[0], to_bgr(best[1]))
