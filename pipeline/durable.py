"""Writes that survive a power cut, and the SQLite files they go to, shared by every store that
keeps state on local disk."""

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


class DatabaseFileError(sqlite3.DatabaseError):
    """A SQLite file that is no usable database: not SQLite at all, or damaged. The message names
    the file and what is wrong; unlike a locked or missing file, waiting cannot cure it."""


# Result codes (the low byte of an extended code) that blame the file itself, not the moment.
_UNUSABLE_FILE = {
    sqlite3.SQLITE_NOTADB: "not a SQLite database",
    sqlite3.SQLITE_CORRUPT: "database disk image is malformed",
}


@contextmanager
def naming_unusable_file(path: Path) -> Iterator[None]:
    """Raises SQLite's word that ``path`` is no database, or a damaged one, as a DatabaseFileError
    naming it; every other error (locked, read-only, gone) passes unchanged, for its caller to retry."""
    try:
        yield
    except DatabaseFileError:
        raise
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        reason = None if code is None else _UNUSABLE_FILE.get(code & 0xFF)
        if reason is None:
            raise
        raise DatabaseFileError(f"{path}: {reason}") from exc


# A WAL reader waits only while another connection recovers or checkpoints the log, which is brief:
# longer means something is wrong, and a page request should say so rather than hang.
READ_BUSY_TIMEOUT_S = 5.0


def open_wal(path: Path, busy_timeout_s: float, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` in WAL mode, to share between threads under a lock
    (``isolation_level=None``: transactions are explicit). In WAL mode a ``read_only`` connection
    reads while another connection, in any process, holds the write lock."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        with naming_unusable_file(path):
            if read_only:
                conn.execute("PRAGMA query_only=ON")
            else:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


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
