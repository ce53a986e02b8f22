"""A short ring buffer of a camera's encoded packets, and MP4 clips cut from it without re-encoding.

Keeping encoded packets (a few MB per camera at street-camera bitrates) instead of decoded
pictures is what makes a clip around every case affordable on a box with many cameras.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av


@dataclass(frozen=True, slots=True, eq=False)
class StreamParams:
    """The codec parameters of the stream the packets came from, kept as a one-frame MP4.

    PyAV copies codec parameters only from another stream (``add_stream_from_template``); setting
    extradata on a new stream is overwritten when PyAV opens an encoder for it. A tiny MP4 holding
    the first keyframe outlives the source container (and its reconnects) and serves as that
    template for every clip.
    """

    template_mp4: bytes
    size: tuple[int, int] | None = None  # the pictures' width and height, where the stream declares them

    @classmethod
    def from_stream(cls, stream, keyframe) -> StreamParams:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as container:
            out = container.add_stream_from_template(stream)
            packet = av.Packet(bytes(keyframe))
            packet.stream, packet.time_base = out, stream.time_base
            packet.pts = packet.dts = 0
            packet.is_keyframe = True
            container.mux(packet)
        context = stream.codec_context
        return cls(buffer.getvalue(), (context.width, context.height) if context.width and context.height else None)


@dataclass(frozen=True, slots=True)
class _Packet:
    data: bytes
    pts_s: float
    dts_s: float
    keyframe: bool
    params: StreamParams


class ClipError(RuntimeError):
    """No clip can be cut for the requested span."""


class PacketRing:
    """The last ``seconds`` of encoded video. Written by one decode thread, read by evidence writers."""

    TIME_BASE = Fraction(1, 90_000)  # MPEG clock: exact for 25, 30, 12.5 and 15 fps

    def __init__(self, seconds: float = 30.0) -> None:
        self.seconds = seconds
        self._packets: deque[_Packet] = deque()
        self._lock = threading.Lock()

    def add(self, data: bytes, *, pts_s: float, dts_s: float, keyframe: bool, params: StreamParams) -> None:
        with self._lock:
            self._packets.append(_Packet(data, pts_s, dts_s, keyframe, params))
            while self._packets and self._packets[0].dts_s < dts_s - self.seconds:
                self._packets.popleft()

    @property
    def held_bytes(self) -> int:
        """The bytes of the packets held: what the ring costs in memory, less Python's per-packet overhead."""
        with self._lock:
            return sum(len(packet.data) for packet in self._packets)

    @property
    def picture_size(self) -> tuple[int, int] | None:
        """The size of the newest packet's pictures, as its stream declares it; None: none held, or undeclared."""
        with self._lock:
            return self._packets[-1].params.size if self._packets else None

    @property
    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) pts held, or None when empty."""
        with self._lock:
            if not self._packets:
                return None
            return self._packets[0].pts_s, self._packets[-1].pts_s

    def gop(self, at_s: float, after_s: float = 0.5) -> list[_Packet]:
        """The packets a decoder needs for the picture shown at ``at_s``, in decode order: from the
        last keyframe at or before it through those decoded up to ``after_s`` later, all of that
        keyframe's stream (a reconnect starts another); empty when no keyframe before it is held."""
        with self._lock:
            packets = list(self._packets)
        keyframes = [i for i, p in enumerate(packets) if p.keyframe and p.pts_s <= at_s]
        if not keyframes:
            return []
        first = keyframes[-1]
        params = packets[first].params
        return [p for p in packets[first:] if p.dts_s <= at_s + after_s and p.params is params]

    def clip(self, start_s: float, end_s: float) -> bytes:
        """An MP4 of [start_s, end_s], starting at the last keyframe at or before start_s."""
        with self._lock:
            packets = list(self._packets)
        keyframes = [i for i, p in enumerate(packets) if p.keyframe and p.pts_s <= start_s]
        if not keyframes:
            keyframes = [i for i, p in enumerate(packets) if p.keyframe and p.pts_s <= end_s]
        if not keyframes:
            raise ClipError(f"no keyframe held between {start_s:.1f}s and {end_s:.1f}s")
        first = keyframes[-1]
        params = packets[first].params
        # a reconnect may change the stream's parameters: a clip holds one stream only
        selected = [p for p in packets[first:] if p.dts_s <= end_s and p.params is params]
        origin = selected[0].dts_s
        buffer = io.BytesIO()
        with av.open(io.BytesIO(params.template_mp4)) as template, av.open(buffer, "w", format="mp4") as container:
            stream = container.add_stream_from_template(template.streams.video[0])
            stream.time_base = self.TIME_BASE
            for p in selected:
                packet = av.Packet(p.data)
                packet.stream = stream
                packet.time_base = self.TIME_BASE
                packet.pts = round((p.pts_s - origin) / self.TIME_BASE)
                packet.dts = round((p.dts_s - origin) / self.TIME_BASE)
                packet.is_keyframe = p.keyframe
                container.mux(packet)
        return buffer.getvalue()
