"""Pytest fixtures: a real s3 server on loopback, started by the test setup.

No MinIO binary installs on the test machines, so moto's S3 server stands in, spoken to over HTTP
by the real minio client. It runs in this process (``ThreadedMotoServer``): moto keeps its buckets
in process memory, so ``stop()`` closes the port (clients see connection refused, as with a dead
MinIO) and ``start()`` opens the same port again with every object still there.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator

import pytest
from minio import Minio


class S3Server:
    """moto's S3 on ``127.0.0.1``; the port is chosen on the first start and kept across restarts."""

    access_key = "patrol-test-access-key"
    # Distinctive, so a test can assert no message or log line ever carries it.
    secret_key = "patrol-test-secret-key-never-printed"

    def __init__(self) -> None:
        self._server = None
        self._port: int | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the S3 test server has not been started yet")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.running:
            return
        from moto.server import ThreadedMotoServer  # heavy import, paid only by tests that use S3

        if self._port is not None:
            # ThreadedMotoServer.start() waits forever if its thread cannot bind; fail instead.
            _check_port_free(self._port)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port or 0, verbose=False)
        server.start()
        self._port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        """Close the listening socket; objects stay in moto's memory for the next ``start()``."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()

    def client(self) -> Minio:
        """A plain minio client for looking at the bucket behind a store's back."""
        return Minio(f"127.0.0.1:{self.port}", access_key=self.access_key, secret_key=self.secret_key, secure=False)


def _check_port_free(port: int) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        raise RuntimeError(f"cannot restart the S3 test server: port {port} was taken meanwhile ({exc})") from exc
    finally:
        probe.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # verbose=False silences moto's banner; werkzeug still logs every request at INFO, which would
    # bury a failing test's captured log under hundreds of PUT/GET lines.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    """Settings for a store on the test server, with a bucket name no other test uses (not created)."""
    s3_server.start()  # a test that simulated an outage may have left it stopped
    return {
        "S3_ENDPOINT": s3_server.endpoint,
        "S3_ACCESS_KEY": s3_server.access_key,
        "S3_SECRET_KEY": s3_server.secret_key,
        "S3_BUCKET": f"evidence-{uuid.uuid4().hex[:16]}",
    }
