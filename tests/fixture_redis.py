"""Pytest fixtures: a real redis server on loopback, started by the test setup.

``redis_server`` (session) is one ``redis-server`` on a free ``127.0.0.1`` port with an
append-only file fsync'd on every write, stopped when the session ends; ``redis_url`` (per test)
makes sure it runs, flushes it and returns its ``redis://`` URL. :class:`RedisServer` also serves
tests that need a server of their own (a password, an outage they cause themselves).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support import free_port

REDIS_SERVER = Path("/usr/bin/redis-server")
SETPRIV = "/usr/bin/setpriv"  # util-linux
READY_TIMEOUT_S = 15.0


def _die_with_pytest() -> list[str]:
    # A pytest killed outright runs no teardown; PR_SET_PDEATHSIG has the kernel stop the server
    # then (setpriv sets it and execs, so no Python runs between fork and exec). It fires when the
    # *thread* that started the server ends: start servers from the test's own thread.
    return [SETPRIV, "--pdeathsig", "TERM"] if Path(SETPRIV).is_file() else []


class RedisServer:
    """One redis-server on ``127.0.0.1:port``; port and data dir stay the same across restarts,
    so what was written before a :meth:`stop` or :meth:`kill` is back after :meth:`start` (AOF)."""

    def __init__(self, data_dir: Path, *, port: int | None = None, password: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.log_path = self.data_dir / "redis-server.log"
        self._process: subprocess.Popen | None = None
        self._paused = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A plain client for looking behind the queue's back; close it when done."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True,
                           socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> RedisServer:
        """Starts the server (no-op if running) and waits, at most ``timeout_s``, until PING answers."""
        if self.running:
            return self
        if not REDIS_SERVER.is_file():
            pytest.fail(f"{REDIS_SERVER} is missing: the Redis tests start a real redis-server; `make test` installs "
                        "it (tests/servers/install-packages.sh, Debian package redis-server)", pytrace=False)
        command = [*_die_with_pytest(), str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
                   "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                   "--logfile", str(self.log_path)]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        self._paused = False
        deadline = time.monotonic() + timeout_s
        with contextlib.closing(self.client()) as client:
            while self._process.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.TimeoutError):  # not listening yet, or loading its AOF
                    time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout_s:.0f}s "
                           f"(exit {self._process.returncode}); log tail:\n{self._log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, which Redis takes as SHUTDOWN (AOF flushed), and wait; SIGKILL after ``timeout_s``."""
        if self.running:
            if self._paused:
                self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash; only what the AOF already holds survives."""
        if self.running:
            self._process.kill()
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: a hung server. Connections are accepted by the kernel but nothing is answered."""
        if not self.running:
            raise RuntimeError("redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self.running:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def flushall(self) -> None:
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
        self._paused = False

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError as exc:
            return f"(no log: {exc})"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server; a test may stop, kill or pause it, ``redis_url`` brings it back."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the running, empty session server (db 0)."""
    redis_server.resume()
    redis_server.start()
    redis_server.flushall()
    return redis_server.url
