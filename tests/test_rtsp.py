"""Ingest against a real RTSP server on loopback: live decoding, a camera killed and restarted,
a hung camera, one that never answers, one that refuses, and damaged video files.

Served: the shipped sample street (150 s, 15 fps, H.264, a keyframe every 2 s), each client from
its start. Timeouts and backoff are cut to seconds so every outage plays out quickly; the bounds
asserted leave room for a loaded 2-core machine.
"""

from __future__ import annotations

import itertools
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

import pytest
from support import SAMPLE_VIDEO, cut_video, free_port, garble, sample_camera, wait_for

from pipeline.config import CameraConfig
from pipeline.config.camera import IngestConfig
from pipeline.ingest import LiveSource, PacketRing, SourceError, SourceStats, StateChange, decode

CAMERA_ID = "shuangshan-sample"
# stall noticed after 1 s, connection dropped after 3 s without data, retries every 0.2..1 s
FAST = {"open_timeout_s": 2.0, "read_timeout_s": 3.0, "stall_after_s": 1.0,
        "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
RECOVERY_BOUND_S = 6.0  # restart → live: at most one backoff (1 s) + connect and probe (~1.5 s) + slack


def camera_at(url: str, **ingest: float) -> CameraConfig:
    return sample_camera(url=url, ingest={**FAST, **ingest})


def with_password(url: str) -> str:
    """The same URL with credentials, which the server ignores and no message may show."""
    return url.replace("rtsp://", "rtsp://admin:s3cret@", 1)


@pytest.fixture
def thread_errors(monkeypatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that escaped any thread during the test."""
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


class Running:
    """A LiveSource under test, with a thread taking its frames the way the patrol does."""

    def __init__(self, camera: CameraConfig, *, loop_files: bool = False) -> None:
        self.stop, self.wake = threading.Event(), threading.Event()
        self.stats = SourceStats()
        self.changes: list[tuple[str, StateChange]] = []  # (thread that made it, change)
        self.frames: list[tuple[float, object]] = []  # (monotonic time taken, Frame)
        self.source = LiveSource(camera, PacketRing(30), self.stats, loop_files=loop_files, wake=self.wake,
                                 stop=self.stop, on_state=self._on_state)
        self._taker = threading.Thread(target=self._take, daemon=True)

    def _on_state(self, change: StateChange) -> None:
        self.changes.append((threading.current_thread().name, change))

    def _take(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(0.1)
            self.wake.clear()
            if (frame := self.source.take()) is not None:
                self.frames.append((time.monotonic(), frame))

    def __enter__(self) -> Self:
        self.source.start()
        self._taker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.source.join(10)
        self._taker.join(5)

    @property
    def pts(self) -> list[float]:
        return [frame.pts_s for _, frame in self.frames]

    def transitions(self) -> list[tuple[str, str]]:
        return [(change.old, change.new) for change in self.source.history]

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout_s: float) -> float:
        """Seconds until ``predicate()`` held; fails the test after ``timeout_s``, with the source's story."""
        return wait_for(predicate, timeout_s, what, every_s=0.02, detail=lambda: (
            f"state {self.source.state}, history {self.transitions()}, last error {self.source.last_error}"))

    def wait_state(self, state: str, timeout_s: float) -> float:
        return self.wait_for(f"state {state}", lambda: self.source.state == state, timeout_s)


def follows_in_order(steps: list[tuple[str, str]], seen: list[tuple[str, str]]) -> bool:
    it = iter(seen)
    return all(step in it for step in steps)


# ---- a live camera ----


def test_decode_from_rtsp_yields_frames_at_the_analysis_rate_with_growing_pts(rtsp_server):
    server = rtsp_server({"street": SAMPLE_VIDEO})
    stats = SourceStats()
    frames = []
    started = time.monotonic()
    for frame in decode(server.url("street"), camera_id="cam", analysis_fps=5, stats=stats,
                        open_timeout_s=5, read_timeout_s=5):
        frames.append(frame)
        if frame.pts_s >= 4.0:
            break
    elapsed = time.monotonic() - started
    steps = [b.pts_s - a.pts_s for a, b in itertools.pairwise(frames)]
    assert len(frames) >= 20
    assert all(step == pytest.approx(0.2, abs=0.01) for step in steps), steps  # 15 fps sampled at 5
    assert all(b.wall_ts >= a.wall_ts for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (540, 960, 3)
    assert stats.received >= 3 * (len(frames) - 1)
    assert elapsed >= 3.0  # a camera delivers in real time, unlike a file
    assert stats.decode_s > 0 and stats.corrupt == 0 and stats.resync_skipped == 0


def test_a_killed_camera_is_reconnected_when_it_comes_back_and_its_clock_keeps_growing(rtsp_server, thread_errors):
    server = rtsp_server({"street": SAMPLE_VIDEO})
    with Running(camera_at(with_password(server.url("street")))) as run:
        run.wait_for("3 s of frames", lambda: run.pts and run.pts[-1] >= 3.0, 20)
        assert run.source.state == "live"
        server.kill()
        killed = time.monotonic()
        pre_kill_pts = run.pts[-1]
        run.wait_state("offline", 5)
        time.sleep(max(0.0, killed + 2.0 - time.monotonic()))
        history_at_restart = len(run.source.history)
        server.start()
        restarted = time.monotonic()
        recovery_s = run.wait_state("live", RECOVERY_BOUND_S + 5)
        run.wait_for("frames after recovery", lambda: run.pts[-1] >= pre_kill_pts + 2.0, 10)
        print(f"restart -> live in {recovery_s:.2f}s; history {run.transitions()}")

    assert recovery_s < RECOVERY_BOUND_S
    seen = run.transitions()
    assert follows_in_order([("connecting", "live"), ("live", "offline"), ("offline", "connecting"),
                             ("connecting", "live")], seen), seen
    after_restart = [(c.old, c.new) for c in list(run.source.history)[history_at_restart:]]
    assert ("connecting", "live") in after_restart
    assert seen[-1] == ("live", "stopped") and not run.source.running
    # one clock across the outage: pts only grow, and go on past where the camera died
    pts = run.pts
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert [p for p in pts if p > pre_kill_pts + 1.0]
    first_after = next(frame for taken, frame in run.frames if taken > restarted)
    assert first_after.pts_s > pre_kill_pts
    assert run.stats.reconnects >= 1 and run.stats.stalls == 0
    # every transition reached the listener, from the decode thread; no password anywhere
    assert [change for _, change in run.changes] == list(run.source.history)
    assert {name for name, _ in run.changes} == {f"decode-{CAMERA_ID}"}
    texts = [run.source.last_error or ""] + [change.reason for change in run.source.history]
    assert all("s3cret" not in text for text in texts)
    offline = next(c for c in run.source.history if c.new == "offline")
    assert f"camera {CAMERA_ID}" in offline.reason and "admin:***@127.0.0.1" in offline.reason
    assert not thread_errors


def test_a_hung_camera_is_stalled_then_dropped_and_recovers(rtsp_server, thread_errors):
    server = rtsp_server({"street": SAMPLE_VIDEO})
    settings = IngestConfig(**FAST)
    with Running(camera_at(server.url("street"))) as run:
        run.wait_for("2 s of frames", lambda: run.pts and run.pts[-1] >= 2.0, 20)
        server.pause()  # SIGSTOP: the connection stays open, nothing more arrives
        paused = time.monotonic()
        stalled_s = run.wait_state("stalled", settings.stall_after_s + 4)
        offline_s = run.wait_for("offline", lambda: run.source.state == "offline",
                                 2 * settings.read_timeout_s + 6) + stalled_s
        pts_before = run.pts[-1]
        time.sleep(max(0.0, paused + offline_s + 1.0 - time.monotonic()))  # a retry meets the hung server
        server.resume()
        resumed_s = run.wait_state("live", 15)
        run.wait_for("frames after resuming", lambda: run.pts[-1] > pts_before + 1.0, 10)
        print(f"paused -> stalled {stalled_s:.2f}s, -> offline {offline_s:.2f}s; resumed -> live {resumed_s:.2f}s")

    # the watchdog reports it while the decode thread is still blocked in its read
    assert stalled_s < settings.stall_after_s + 2.0
    # dropped by the read timeout, about twice over: FFmpeg's RTSP reader first hands over what it
    # still holds, then gives up (measured 6.0 s with a 3 s read timeout)
    assert settings.read_timeout_s - 0.5 <= offline_s <= 2 * settings.read_timeout_s + 3.0
    assert resumed_s < 10.0
    seen = run.transitions()
    assert follows_in_order([("connecting", "live"), ("live", "stalled"), ("stalled", "offline"),
                             ("offline", "connecting"), ("connecting", "live")], seen), seen
    stalled = next(change for change in run.source.history if change.new == "stalled")
    assert stalled.reason.startswith("no picture for")
    makers = {change.new: name for name, change in run.changes}
    assert makers["stalled"] == f"watchdog-{CAMERA_ID}" and makers["offline"] == f"decode-{CAMERA_ID}"
    dropped = next(change for change in run.source.history if change.new == "offline")
    assert f"camera {CAMERA_ID}" in dropped.reason and f"no data in {settings.read_timeout_s:g}s" in dropped.reason
    stalls = [change for change in run.source.history if change.new == "stalled"]
    assert run.stats.stalls == len(stalls) >= 1 and run.stats.reconnects >= 1
    assert all(b > a for a, b in itertools.pairwise(run.pts))
    assert not thread_errors


@pytest.mark.realtime  # waits out the open timeout on the wall clock
def test_a_camera_that_never_answers_is_offline_within_the_open_timeout(thread_errors):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        held: list[socket.socket] = []

        def accept_and_say_nothing() -> None:
            while True:
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept_and_say_nothing, daemon=True).start()
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/street"
        with Running(camera_at(url, open_timeout_s=1.0, reconnect_min_s=5.0, reconnect_max_s=5.0)) as run:
            offline_s = run.wait_state("offline", 6)
            assert run.source.running and run.source._thread.is_alive()
            print(f"silent camera -> offline in {offline_s:.2f}s")
        for connection in held:
            connection.close()

    # PyAV bounds opening the input and then probing its streams, each by the open timeout
    assert 0.9 <= offline_s < 2 * 1.0 + 1.5
    assert held  # it did connect: this is a silent camera, not a refused one
    assert run.source.last_error.startswith(f"camera {CAMERA_ID}: cannot open rtsp://127.0.0.1:")
    assert "no answer in 1s" in run.source.last_error
    assert run.stats.received == 0
    assert not thread_errors


@pytest.mark.realtime  # 4 s of reconnect attempts on the wall clock
def test_a_refused_connection_is_retried_with_growing_backoff(thread_errors):
    url = f"rtsp://127.0.0.1:{free_port()}/street"  # nothing listens there
    with Running(camera_at(url, reconnect_min_s=0.1, reconnect_max_s=2.0)) as run:
        time.sleep(4.0)
    offline = [change for change in run.source.history if change.new == "offline"]
    delays = [float(re.search(r"retry in ([\d.]+)s$", change.reason).group(1)) for change in offline]
    print(f"{len(offline)} attempts in 4 s, waits {delays}")
    # without backoff 0.1 s apart would be ~40 attempts; doubling ceilings give about 6
    assert 4 <= len(offline) <= 12
    assert all("Connection refused" in change.reason for change in offline)
    assert all(0.1 - 0.01 <= delay <= min(2.0, 0.1 * 2**k) + 0.01 for k, delay in enumerate(delays)), delays
    assert max(delays[3:]) > max(delays[:2])  # the ceiling grows: later waits exceed the first ones
    assert run.stats.reconnects == len(offline) == run.source.backoff.failures
    assert run.transitions()[-1][1] == "stopped"
    assert not thread_errors


def test_backoff_grows_to_its_ceiling_with_full_jitter_and_resets():
    from pipeline.retry import Backoff

    backoff = Backoff(0.5, 30.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**k) for k in range(12)]
    assert all(0.5 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) > 8.0  # the later ceilings (32 s capped to 30 s) are reached
    backoff.reset()
    assert backoff.next_delay() == 0.5


# ---- damaged video files ----


def test_a_truncated_file_yields_what_it_holds_then_names_the_camera(tmp_path):
    cut = tmp_path / "cut.mp4"
    data = cut_video(SAMPLE_VIDEO, tmp_path / "whole.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    pts = []
    with pytest.raises(SourceError, match=r"camera cam-7: video file .*cut\.mp4 is damaged: .*ends early"):
        for frame in decode(str(cut), camera_id="cam-7", analysis_fps=5):
            pts.append(frame.pts_s)
    assert 60 <= pts[-1] <= 90  # about half of the 150 s survived
    assert all(b > a for a, b in itertools.pairwise(pts))
    # the sample as recorded keeps its index at the end: cut short, nothing can be read at all
    plain = tmp_path / "plain.mp4"
    plain.write_bytes(SAMPLE_VIDEO.read_bytes()[:1_000_000])
    with pytest.raises(SourceError, match=r"camera cam-7: cannot open .*plain\.mp4"):
        next(decode(str(plain), camera_id="cam-7", analysis_fps=5))


def test_garbage_in_a_file_skips_to_the_next_keyframe_and_no_smeared_frame_is_analysed(tmp_path):
    bad = tmp_path / "garbled.mp4"
    damaged_from, resumes_at = garble(SAMPLE_VIDEO, bad, at_s=75.0)
    assert resumes_at - damaged_from >= 1.0  # a span worth checking
    stats = SourceStats()
    pts = []
    with pytest.raises(SourceError, match=r"camera cam-7: video file .*garbled\.mp4 is damaged: .*next keyframe"):
        for frame in decode(str(bad), camera_id="cam-7", analysis_fps=15, stats=stats):  # every picture
            pts.append(frame.pts_s)
    in_span = [p for p in pts if damaged_from - 1e-6 <= p < resumes_at - 1e-6]
    print(f"damage {damaged_from:.2f}-{resumes_at:.2f}s: corrupt={stats.corrupt} "
          f"resync_skipped={stats.resync_skipped} received={stats.received}")
    assert stats.corrupt >= 1 and stats.resync_skipped > 0
    assert in_span == []  # nothing decoded from the damage up to the next keyframe reached analysis
    assert min(p for p in pts if p >= resumes_at - 1e-6) == pytest.approx(resumes_at, abs=1e-3)
    assert pts[-1] == pytest.approx(149.93, abs=0.01)  # decoding went on to the end after the damage
    span_pictures = round((resumes_at - damaged_from) * 15)
    assert len(pts) >= 2250 - span_pictures - 10  # little more than the damaged span was lost
    assert all(b > a for a, b in itertools.pairwise(pts))


@pytest.mark.realtime  # a live source paces its file at real speed
def test_a_live_source_on_a_damaged_file_fails_once_with_the_error(tmp_path, thread_errors):
    short = cut_video(SAMPLE_VIDEO, tmp_path / "short.mp4", seconds=5.0)
    garbled = tmp_path / "garbled.mp4"
    garble(short, garbled, at_s=2.3, length=3000)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(short.read_bytes()[: short.stat().st_size * 2 // 3])
    # skipping 1.6 s to the next keyframe leaves the paced file without pictures that long: not a stall
    cameras = [camera_at(str(path), stall_after_s=5.0).model_copy(update={"id": name})
               for name, path in (("garbled", garbled), ("cut", cut))]
    runs = [Running(camera, loop_files=True) for camera in cameras]  # looping must not re-read a broken file
    for run in runs:
        run.__enter__()
    try:
        for run in runs:
            run.wait_for("failed", lambda run=run: run.source.state == "failed", 15)
    finally:
        for run in runs:
            run.__exit__()
    for run, name in zip(runs, ("garbled", "cut"), strict=True):
        assert run.transitions() == [("connecting", "live"), ("live", "failed")]
        assert run.source.last_error.startswith(f"camera {name}: video file ") and "is damaged" in run.source.last_error
        assert run.source.history[-1].reason == run.source.last_error
        assert run.stats.reconnects == 0 and run.stats.received <= 75  # read once: 5 s at 15 fps
        assert run.pts and all(b > a for a, b in itertools.pairwise(run.pts))
        assert not run.source._thread.is_alive()
    assert runs[0].stats.resync_skipped > 0
    assert "ends early" in runs[1].source.last_error
    assert not thread_errors
