"""The clocks of a camera's two inputs, reconciled: a sub-stream time (analysed) as a main-stream time (recorded).

Each input has its own stream clock, which starts near 0 at every connection (a reconnect then
continues it past the last time placed, see ``Timeline``): the two clocks share nothing but the
scene. What ties them together is when their packets arrive. A server sends a packet when its
decoding time comes (GStreamer's sinks sync on it), so a packet's arrival on the wall clock minus its
decoding time is the wall time of that connection's stream time 0, plus the packet's delay (encoder,
network, the demuxer's buffering). Its presentation time would not do: a stream with B-frames
sends a frame up to its reordering depth before it is shown, and the two inputs' depths differ
(the sample's main stream reorders up to 5 frames, a sub-stream at ``bf=2`` fewer), which moved
a main-stream picture a frame or two off the sub-stream's moment. The least delay over the last
:data:`WINDOW_S` (the packets that came quickest; a delay is never negative) estimates that
"wall time of 0" for the connection, its *base*; a sub-stream time ``t`` is then shown on the
wall clock at ``t + base_sub`` and the main stream's time of that moment is ``wall - base_main``.
The window lets the estimate follow a camera clock that drifts against the wall clock.

Each connection of an input is an *epoch* with its own base: a reconnect of either input
(``ArrivalClock.reconnected``) starts a new estimate, and times are looked up in the epoch they
belong to (sub-stream times by their stream time, main-stream moments by their wall time), so a
moment when the main stream was down maps to nothing.

Video files arrive when they are read, which says nothing about their scene: their "arrival" is
their own stream time, so two files of one scene are taken to start together.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

WINDOW_S = 30.0  # packets whose least delay makes an epoch's base
SLACK_S = 1.0  # how far before its first (or after a closed epoch's last) time an epoch still answers
EPOCHS_KEPT = 64  # far more reconnects than a packet ring's span can hold


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """Main-stream time = sub-stream time + ``main_minus_sub_s``, at one moment."""

    main_minus_sub_s: float

    def to_main(self, sub_s: float) -> float:
        return sub_s + self.main_minus_sub_s

    def to_sub(self, main_s: float) -> float:
        return main_s - self.main_minus_sub_s


class _Epoch:
    """One connection of an input: its stream (decoding) times and arrivals so far, and the least
    delay of the last ``WINDOW_S`` (a monotonic deque of (arrival, arrival - stream time), least first)."""

    __slots__ = ("first_s", "first_wall", "last_s", "last_wall", "samples", "_window")

    def __init__(self, stream_s: float, wall: float) -> None:
        self.first_s = self.last_s = stream_s
        self.first_wall = self.last_wall = wall
        self.samples = 0
        self._window: deque[tuple[float, float]] = deque()
        self.observe(stream_s, wall)

    def observe(self, stream_s: float, wall: float) -> None:
        self.samples += 1
        self.last_s, self.last_wall = max(self.last_s, stream_s), max(self.last_wall, wall)
        base = wall - stream_s
        window = self._window
        while window and window[-1][1] >= base:
            window.pop()
        window.append((wall, base))
        while window[0][0] < wall - WINDOW_S:
            window.popleft()

    @property
    def base(self) -> float:
        return self._window[0][1]


class ArrivalClock:
    """One input's stream time against the wall clock, per connection (thread-safe: packets are
    observed on the input's reading thread, times looked up by evidence writers).

    ``arrival`` False (a video file): a packet's "arrival" is its own stream time."""

    def __init__(self, *, arrival: bool) -> None:
        self.arrival = arrival
        self._epochs: deque[_Epoch] = deque(maxlen=EPOCHS_KEPT)
        self._new_epoch = True
        self._lock = threading.Lock()

    def reconnected(self) -> None:
        """The input (re)connects: its next packet starts a new epoch."""
        with self._lock:
            self._new_epoch = True

    def observe(self, dts_s: float, wall: float | None = None) -> None:
        """A packet to be decoded at stream time ``dts_s`` arrived at ``wall`` (default: now)."""
        if not self.arrival:
            wall = dts_s
        elif wall is None:
            wall = time.time()
        with self._lock:
            if self._new_epoch or not self._epochs:
                self._epochs.append(_Epoch(dts_s, wall))
                self._new_epoch = False
            else:
                self._epochs[-1].observe(dts_s, wall)

    @property
    def epochs(self) -> int:
        """Connections seen (of the last :data:`EPOCHS_KEPT`)."""
        with self._lock:
            return len(self._epochs)

    def base(self) -> float | None:
        """The current epoch's wall time of stream time 0; None before the first packet."""
        with self._lock:
            return self._epochs[-1].base if self._epochs else None

    def wall_of(self, pts_s: float) -> float | None:
        """When stream time ``pts_s`` was shown, on the wall clock; None when no epoch holds it."""
        with self._lock:
            for index in range(len(self._epochs) - 1, -1, -1):
                epoch = self._epochs[index]
                newest = index == len(self._epochs) - 1
                if epoch.first_s - SLACK_S <= pts_s and (newest or pts_s <= epoch.last_s + SLACK_S):
                    return pts_s + epoch.base
        return None

    def pts_of(self, wall: float) -> float | None:
        """The stream time shown at ``wall``; None when the input had no connection then."""
        with self._lock:
            for index in range(len(self._epochs) - 1, -1, -1):
                epoch = self._epochs[index]
                newest = index == len(self._epochs) - 1
                if epoch.first_wall - SLACK_S <= wall and (newest or wall <= epoch.last_wall + SLACK_S):
                    return wall - epoch.base
        return None


def offset_at(sub: ArrivalClock, main: ArrivalClock, sub_s: float) -> ClockOffset | None:
    """The offset from the sub-stream's clock to the main stream's at sub-stream time ``sub_s``;
    None when either input had no connection at that moment."""
    wall = sub.wall_of(sub_s)
    if wall is None:
        return None
    main_s = main.pts_of(wall)
    return None if main_s is None else ClockOffset(main_s - sub_s)
