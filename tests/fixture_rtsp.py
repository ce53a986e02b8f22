"""Pytest fixtures: a real rtsp server on loopback, started by the test setup.

``rtsp_server({"street": SAMPLE_VIDEO})`` starts ``tests/servers/rtsp_serve.py`` under the system
Python (Debian's GStreamer RTSP server) on a free loopback port and returns an :class:`RtspServer`;
every server a test started is killed when the test ends, whatever happened.

``rtsp_server({"cam": path}, live=True)`` (or ``live={"cam"}`` for some mounts only) serves live
cameras instead: one shared stream per mount that runs on the wall clock from the server's start,
loops the file, and is joined where it is now; :attr:`RtspServer.started_wall` is the
``time.time()`` of position 0, so a test can compute where a live mount should be.
``server.drop("cam")`` / ``server.restore("cam")`` take one mount away and bring it back while the
others (and a live mount's timeline) run on: one stream of a camera restarting.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

import pytest
from support import free_port

SERVE = Path(__file__).resolve().parent / "servers" / "rtsp_serve.py"
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 15.0


def gst_rtsp_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('Gst', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('rtph264pay') and Gst.ElementFactory.find('qtdemux')")
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


class RtspServer:
    """One RTSP server process on ``127.0.0.1:port``; the port stays the same across restarts."""

    def __init__(self, mounts: Mapping[str, str | os.PathLike], port: int | None = None,
                 live: bool | Collection[str] = False) -> None:
        """``live``: True serves every mount as a live camera, a collection of names only those."""
        self.mounts = {name: Path(path) for name, path in mounts.items()}
        self.port = port or free_port()
        live = {live} if isinstance(live, str) else live
        self.live: frozenset[str] = frozenset(self.mounts if live is True else (live or ()))
        if unknown := self.live - self.mounts.keys():
            raise KeyError(f"live mounts {sorted(unknown)} are not among the mounts {sorted(self.mounts)}")
        # time.time() at position 0 of the live mounts (all in step); for plain mounts, when the
        # server got ready. None before the first start; renewed by every start (a restarted live
        # camera starts again from its file's beginning).
        self.started_wall: float | None = None
        self._process: subprocess.Popen | None = None
        self._stderr = None  # a file, not a pipe: nobody reads it while the server runs
        self._paused = False

    def url(self, name: str) -> str:
        if name not in self.mounts:
            raise KeyError(f"no mount {name!r}; mounts: {sorted(self.mounts)}")
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> RtspServer:
        """Starts the server and waits (at most ``timeout_s``) until it prints ``ready``."""
        if self.running:
            raise RuntimeError(f"rtsp server already running on port {self.port}")
        command = [SYSTEM_PYTHON, str(SERVE), "--port", str(self.port)]
        for name, path in self.mounts.items():
            command += ["--live-mount" if name in self.live else "--mount", f"{name}={path}"]
        # the file outlives start(): it is closed when the server is reaped
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr,
                                         stdin=subprocess.PIPE, text=True)
        self._paused = False
        deadline = time.monotonic() + timeout_s
        stdout = self._process.stdout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._process.poll() is not None:
                break
            readable, _, _ = select.select([stdout], [], [], min(left, 0.5))
            if readable:
                line = stdout.readline()
                word, _, started_wall = line.strip().partition(" ")
                if word == "ready":  # "ready WALL": WALL is when the live mounts' timelines started
                    self.started_wall = float(started_wall) if started_wall else time.time()
                    return self
                if not line:  # stdout closed: the process is exiting
                    self._process.wait(5)
                    break
        stderr = self.stderr()
        self.kill()
        raise RuntimeError(f"rtsp server on port {self.port} did not get ready in {timeout_s:.0f}s "
                           f"(exit {self._process.returncode}): {stderr.strip()[-2000:]}")

    def drop(self, name: str, timeout_s: float = 10.0) -> None:
        """Takes mount ``name`` away, the rest of the server running on: its clients' connections
        are closed and new ones refused until :meth:`restore` (a camera's encoder restarting)."""
        self._command(f"drop {name}", f"dropped {name}", timeout_s)

    def restore(self, name: str, timeout_s: float = 10.0) -> None:
        """Brings mount ``name`` back; a live mount is where its timeline is now, in step with the others."""
        self._command(f"restore {name}", f"restored {name}", timeout_s)

    def _command(self, line: str, answer: str, timeout_s: float) -> None:
        if not self.running:
            raise RuntimeError("rtsp server is not running")
        self.url(line.split()[1])  # KeyError for a mount it does not serve
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self._process.stdout], [], [], min(left, 0.5))
            if readable:
                got = self._process.stdout.readline().strip()
                if got == answer:
                    return
                if not got:
                    break
        raise RuntimeError(f"rtsp server did not answer {line!r} with {answer!r}: {self.stderr().strip()[-2000:]}")

    def stderr(self) -> str:
        """What the server wrote on stderr so far (GStreamer warnings, tracebacks)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def kill(self) -> None:
        """SIGKILL: the camera dies without a word; its TCP connections are reset."""
        if self.running:
            if self._paused:
                self._process.send_signal(signal.SIGCONT)
            self._process.kill()
        self._reap()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in ``timeout_s``."""
        if self.running:
            if self._paused:
                self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: a hung camera. Connections stay open and even new ones are accepted by the
        kernel, but nothing is answered or sent."""
        if not self.running:
            raise RuntimeError("rtsp server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.running:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def _reap(self) -> None:
        if self._process is not None:
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for pipe in (self._process.stdout, self._process.stdin):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:  # stdin's buffer could not be flushed into a dead process
                        pass
        if self._stderr is not None:
            self._stderr.close()
        self._paused = False


@pytest.fixture(scope="session")
def _gst_rtsp_available() -> None:
    reason = gst_rtsp_missing()
    if reason is not None:
        pytest.fail(f"the GStreamer RTSP server is missing ({reason}); `make test` installs it "
                    "(tests/servers/install-packages.sh)", pytrace=False)


@pytest.fixture
def rtsp_server(_gst_rtsp_available) -> Iterator[Callable[..., RtspServer]]:
    """Factory: ``rtsp_server({"street": path})`` starts a server serving each file at /name;
    ``live=True`` (or a collection of mount names) serves them as live cameras."""
    servers: list[RtspServer] = []

    def start(mounts: Mapping[str, str | os.PathLike], *, port: int | None = None,
              live: bool | Collection[str] = False) -> RtspServer:
        server = RtspServer(mounts, port, live=live)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
