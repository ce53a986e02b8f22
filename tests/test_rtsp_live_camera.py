"""Live cameras on the loopback RTSP server (``rtsp_server(mounts, live=True)``): what a worker
taking a camera over from another relies on.

A live mount runs on the wall clock from the server's start, whoever watches: a client sees the
picture of "now", from the next keyframe on (the sample has one every 2 s); clients at once see the
same moment; one leaving does not stop or rewind it for the next; the file loops with timestamps
that keep growing. Where a picture is in the file is found by matching it against the file's own
frames decoded with PyAV (smallest mean absolute difference of small grey images): the server
forwards the file's H.264 untouched, so the match is exact.
"""

from __future__ import annotations

import fractions
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from fixture_rtsp import gst_rtsp_missing
from support import SAMPLE_VIDEO

_missing = gst_rtsp_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"the GStreamer RTSP server is missing: {_missing}; "
                                "tests/servers/install-packages.sh installs it")

KEYFRAME_EVERY_S = 2.0  # the sample's GOP: a client starts at the next keyframe after it connects
TOLERANCE_S = 1.5
MATCH_MAX_ERROR = 2.0  # mean absolute grey difference of the best match (0 for the same bitstream)
CLIP_S, CLIP_FPS = 4.0, 15


def small(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray", width=64, height=36).astype(np.float32)


@dataclass
class Reference:
    """The first frames of a file: their times (s, as a player counts them) and small grey images."""

    times: np.ndarray
    images: np.ndarray

    @classmethod
    def of(cls, path: Path, seconds: float) -> Reference:
        times, images = [], []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.time > seconds:
                    break
                times.append(frame.time)
                images.append(small(frame))
        return cls(np.array(times), np.stack(images))

    def position(self, image: np.ndarray) -> float:
        errors = np.abs(self.images - image).mean(axis=(1, 2))
        best = int(errors.argmin())
        assert errors[best] <= MATCH_MAX_ERROR, f"no frame of the file looks like this one (error {errors[best]:.1f})"
        return float(self.times[best])


@dataclass
class Seen:
    at_s: float  # when the client had it, in seconds since the server started
    time: float | None  # the frame's pts in seconds, as the client got it
    image: np.ndarray


@dataclass
class Watch:
    """One client's view: frames as decoded, with when it connected and when it let go."""

    connect_s: float
    frames: list[Seen] = field(default_factory=list)
    closed_s: float = 0.0

    def positions(self, reference: Reference) -> list[float]:
        return [reference.position(seen.image) for seen in self.frames]

    def steady(self) -> list[Seen]:
        """Frames that came in real time: FFmpeg hands over what it buffered while probing in a
        burst, so the first half second after the first frame is left out."""
        return [seen for seen in self.frames if seen.at_s >= self.frames[0].at_s + 0.5]


def watch(url: str, started_wall: float, seconds: float, until=None) -> Watch:
    """Reads ``url`` the way the patrol does, for ``seconds`` after the first frame (or until
    ``until(frames)`` holds, at most that long)."""
    seen = Watch(connect_s=time.time() - started_wall)
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            seen.frames.append(Seen(time.time() - started_wall, frame.time, small(frame)))
            if seen.frames[-1].at_s - seen.frames[0].at_s >= seconds or (until and until(seen.frames)):
                break
    seen.closed_s = time.time() - started_wall
    return seen


def sleep_until(started_wall: float, at_s: float) -> None:
    time.sleep(max(0.0, started_wall + at_s - time.time()))


@pytest.fixture(scope="module")
def sample_reference() -> Reference:
    return Reference.of(SAMPLE_VIDEO, 25.0)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """4 s cut from the sample, re-encoded small: H.264 with B-frames, a keyframe every second."""
    path = tmp_path_factory.mktemp("live") / "clip.mp4"
    with av.open(str(SAMPLE_VIDEO)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(CLIP_FPS), "keyint_min": str(CLIP_FPS),
                          "sc_threshold": "0", "bf": "2"}
        for index, frame in enumerate(source.decode(video=0)):
            if index >= CLIP_S * CLIP_FPS:
                break
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p", width=320, height=180),
                                                 format="yuv420p")
            picture.pts, picture.time_base = index, fractions.Fraction(1, CLIP_FPS)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def test_a_client_gets_the_picture_of_now_and_one_coming_after_a_gap_gets_it_further_on(rtsp_server, sample_reference):
    server = rtsp_server({"street": SAMPLE_VIDEO}, live=True)
    url = server.url("street")

    sleep_until(server.started_wall, 3.0)
    first = watch(url, server.started_wall, 1.5)
    positions = first.positions(sample_reference)
    # from the next keyframe after connecting: not from the file's start, not from before it connected
    assert first.connect_s - 0.5 <= positions[0] <= first.connect_s + KEYFRAME_EVERY_S + 0.5, \
        (first.connect_s, positions[:3])
    for seen in first.steady():  # and then what the camera shows now
        assert sample_reference.position(seen.image) == pytest.approx(seen.at_s, abs=TOLERANCE_S), \
            (seen.at_s, positions)

    # the worker let go; another takes the camera over 2 s later: it went on meanwhile
    sleep_until(server.started_wall, first.closed_s + 2.0)
    second = watch(url, server.started_wall, 1.5)
    later = second.positions(sample_reference)
    assert later[0] >= positions[-1] + 2.0 - 0.5, (positions[-1], later[:3])
    assert later[0] <= second.connect_s + KEYFRAME_EVERY_S + 0.5, (second.connect_s, later[:3])
    # the camera ran on the wall clock while nobody watched: as far on as the time between the views
    assert later[-1] - positions[-1] == pytest.approx(second.frames[-1].at_s - first.frames[-1].at_s,
                                                      abs=TOLERANCE_S)
    assert "ERROR" not in server.stderr() and "CRITICAL" not in server.stderr(), server.stderr()


def test_clients_watching_at_once_see_the_same_moment_and_one_joining_does_not_rewind_it(rtsp_server,
                                                                                         sample_reference):
    server = rtsp_server({"street": SAMPLE_VIDEO}, live=True)
    url = server.url("street")
    views: dict[str, Watch] = {}

    def keep(name: str, seconds: float) -> None:
        views[name] = watch(url, server.started_wall, seconds)

    sleep_until(server.started_wall, 1.0)
    early = threading.Thread(target=keep, args=("early", 5.5))
    early.start()
    sleep_until(server.started_wall, 3.5)
    keep("late", 2.0)  # its PLAY asks for Range npt=0-: it must not seek the camera back
    early.join(20)
    assert not early.is_alive()

    early_positions = views["early"].positions(sample_reference)
    assert all(b >= a - 0.2 for a, b in itertools.pairwise(early_positions)), early_positions
    early_frames = views["early"].steady()
    compared = 0
    for seen in views["late"].steady():
        nearest = min(early_frames, key=lambda other: abs(other.at_s - seen.at_s))
        if abs(nearest.at_s - seen.at_s) <= 0.1:
            compared += 1
            assert sample_reference.position(seen.image) == pytest.approx(
                sample_reference.position(nearest.image), abs=0.5), seen.at_s
    assert compared >= 10


def test_the_file_loops_with_timestamps_that_keep_growing(rtsp_server, short_clip):
    server = rtsp_server({"clip": short_clip}, live=True)
    reference = Reference.of(short_clip, CLIP_S)

    matched: list[float] = []

    def looped_and_went_on(frames: list[Seen]) -> bool:
        matched.append(reference.position(frames[-1].image))
        wraps = [i for i in range(1, len(matched)) if matched[i] < matched[i - 1]]
        return bool(wraps) and len(matched) - wraps[0] >= 15

    sleep_until(server.started_wall, 0.5)
    seen = watch(server.url("clip"), server.started_wall, CLIP_S + 3.0, until=looped_and_went_on)
    positions = seen.positions(reference)
    wraps = [i for i in range(1, len(positions)) if positions[i] < positions[i - 1]]
    assert wraps, f"no loop seen in {positions[0]:.2f}..{positions[-1]:.2f}"
    assert positions[wraps[0]] <= 0.1 and positions[wraps[0] - 1] >= CLIP_S - 0.1  # seamless: last, then first
    times = [frame.time for frame in seen.frames]
    assert None not in times[1:]
    steps = [b - a for a, b in itertools.pairwise(times[1:])]
    assert all(step > 0 for step in steps), steps  # never backwards, no repeat across the loop
    assert max(steps) <= 2.5 / CLIP_FPS, steps  # no pause at the loop either
    # on the wall clock: position = time since the start, modulo the clip's length
    for frame in seen.steady():
        offset = (reference.position(frame.image) - frame.at_s) % CLIP_S
        assert min(offset, CLIP_S - offset) <= 0.5, (frame.at_s, reference.position(frame.image))
