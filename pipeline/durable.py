"""Writes that survive a power cut, shared by every store that keeps state on local disk."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """Creates ``path`` (it must not exist) with ``data``, flushed to the disk before returning."""
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Makes the names created or renamed in ``directory`` themselves durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def immediate_transaction(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One SQLite write transaction on a connection shared by threads (``isolation_level=None``).

    IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can
    fail with SQLITE_BUSY at once instead of waiting out the busy timeout, and a read-check-write
    stays atomic against other processes.
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
