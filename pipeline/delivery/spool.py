"""Write-ahead spool: every case reaches local disk before any backend, so an outage loses nothing.

A rendered case is written into a staging folder under the spool (its evidence files and
``record.json``, each fsync'd), then committed by one atomic rename. The drainer
(``pipeline/delivery/drainer.py``) delivers committed entries in commit order; a worker killed at
any point finds its committed entries on restart and delivers them.

A case is committed when it is confirmed, before its clip's post-roll has been recorded: the entry
is whole (its record says where its clip ends) but *pending*, which only the process that wrote it
knows and the drainer respects. Once the post-roll is in, the completed case is committed as a new
entry and the pending one removed. A process killed before that leaves the pending entry, which the
next one, knowing nothing of it, delivers as it is; killed in between, it leaves both, and the next
one keeps the later.

The layout on disk (``<commit-order>--<case_id>/record.json`` and ``files/<evidence key>``) is
the same as before delivery became its own package, so a spool left by an older worker drains
after an upgrade.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pipeline.durable import fsync_directory, write_synced
from pipeline.evidence import LocalEvidenceStore, RenderedCase
from pipeline.types import CaseNote, CaseRecord

_RECORD = "record.json"
_NOTE = "note.json"
_FILES = "files"
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_T = TypeVar("_T")


class Undeliverable(ValueError):
    """A spooled entry that cannot be read back as a valid case or note: no retry will ever deliver it."""


@dataclass(frozen=True)
class SpoolEntry:
    """A committed case waiting for delivery; ``files`` holds its evidence under the final keys."""

    path: Path

    @property
    def case_id(self) -> str:
        return self.path.name.split("--", 1)[1]

    @property
    def files(self) -> LocalEvidenceStore:
        return LocalEvidenceStore(self.path / _FILES)

    @property
    def is_note(self) -> bool:
        return (self.path / _NOTE).is_file()

    def record(self) -> CaseRecord:
        """The case, checked as far as delivery needs; Undeliverable when malformed or missing evidence."""
        record = self._parsed(_RECORD, CaseRecord.from_dict)
        try:
            datetime.fromisoformat(record.confirmed_wall)  # the queue indexes cases by it
            files = self.files
            missing = [item.key for item in record.evidence.values() if not files.exists(item.key)]
        except (ValueError, TypeError) as exc:
            raise Undeliverable(f"invalid record: {exc}") from exc
        if missing:
            raise Undeliverable(f"evidence missing from the spool: {', '.join(missing)}")
        return record

    def note(self) -> CaseNote:
        """The note; Undeliverable when malformed."""
        return self._parsed(_NOTE, CaseNote.from_dict)

    def _parsed(self, name: str, build: Callable[[dict], _T]) -> _T:
        # Only a file that is gone or garbled is undeliverable: any other OSError (EIO, EMFILE)
        # may pass, so it goes up to be retried.
        try:
            return build(json.loads((self.path / name).read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise Undeliverable(f"{name} is missing") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not a record's shape
            raise Undeliverable(f"unreadable {name}: {exc!r}") from exc


class SpoolBusy(RuntimeError):
    """Another live process holds this spool folder; each worker needs its own."""


class CaseSpool:
    """Ordered, crash-safe folder of cases not yet delivered (``root/<commit-order>--<case_id>``).

    One process at a time: it holds an advisory lock on the folder until it exits (the kernel
    drops the lock of a killed process, so a restart takes the spool over at once).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._staging = self.root / ".staging"
        self.rejected = self.root / "rejected"
        self._staging.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.root / ".lock", "a+b")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"spool {self.root} is in use by another patrol process; "
                            "give each worker its own") from None
        # Staging folders of a process that died before committing hold half a case: its
        # violation was never announced, so the next run re-derives it or it never existed.
        for leftover in self._staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        self._lock = threading.Lock()
        self._last_order = 0
        self._pending: dict[str, Path] = {}  # case id -> entry whose clip this process still records
        latest: dict[str, SpoolEntry] = {}
        for entry in self.entries():
            if not entry.is_note:
                if entry.case_id in latest:  # completed before the kill: the earlier one was pending
                    self.remove(latest[entry.case_id])
                latest[entry.case_id] = entry

    def close(self) -> None:
        self._lock_file.close()

    def commit(self, case: RenderedCase, *, pending: bool = False) -> SpoolEntry:
        """Durably adds a rendered case; after this returns, the case survives a power cut. A
        ``pending`` one (its clip still being recorded) is not ``deliverable`` until ``complete``
        replaces it; a later process delivers it as it is."""
        return self._commit(case.case_id, _RECORD, case.record.to_dict(), case.store_into, pending=pending)

    def complete(self, case: RenderedCase) -> SpoolEntry:
        """Durably replaces the pending entry of ``case`` with ``case``, deliverable. KeyError if
        this process holds no pending entry of it."""
        pending = self._pending[case.case_id]
        entry = self.commit(case)
        with self._lock:  # out of sight before it stops being pending: see deliverable
            doomed = self._staging / f"done.{pending.name}"
            os.replace(pending, doomed)
            del self._pending[case.case_id]
        shutil.rmtree(doomed, ignore_errors=True)
        return entry

    def add_note(self, note: CaseNote) -> SpoolEntry:
        """Durably queues a note; it is delivered after every case committed before it."""
        return self._commit(note.case_id, _NOTE, note.to_dict(), lambda _files: None)

    def _commit(self, case_id: str, name: str, content: dict,
                put_files: Callable[[LocalEvidenceStore], None], *, pending: bool = False) -> SpoolEntry:
        if not case_id or "/" in case_id or case_id.startswith("."):
            raise ValueError(f"{case_id!r} cannot name a spool entry")
        staged = self._staging / f"{case_id}.{uuid.uuid4().hex}"
        staged.mkdir()
        try:
            put_files(LocalEvidenceStore(staged / _FILES))
            write_synced(staged / name, json.dumps(content, ensure_ascii=False).encode("utf-8"))
            fsync_directory(staged)
            final = self.root / f"{self._next_order():020d}--{case_id}"
            if pending:  # before it shows: the drainer must never find it deliverable
                with self._lock:
                    self._pending[case_id] = final
            os.replace(staged, final)
        except BaseException:
            if pending:
                with self._lock:
                    self._pending.pop(case_id, None)
            shutil.rmtree(staged, ignore_errors=True)
            raise
        fsync_directory(self.root)
        return SpoolEntry(final)

    def entries(self) -> list[SpoolEntry]:
        """Committed entries in commit order."""
        return [SpoolEntry(p) for p in sorted(self.root.iterdir()) if "--" in p.name and p.is_dir()]

    def deliverable(self) -> list[SpoolEntry]:
        """Committed entries in commit order, less those whose clip this process still records."""
        with self._lock:  # one look at both: an entry is removed before it leaves _pending
            recording = set(self._pending.values())
            return [entry for entry in self.entries() if entry.path not in recording]

    def holds(self, case_id: str) -> bool:
        """Whether a case (not a note) with this id waits here."""
        return any(entry.case_id == case_id and not entry.is_note for entry in self.entries())

    def remove(self, entry: SpoolEntry) -> None:
        # Renamed out of the way first, so a crash halfway through deleting never leaves a
        # committed-looking entry with files missing.
        doomed = self._staging / f"done.{entry.path.name}"
        os.replace(entry.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def reject(self, entry: SpoolEntry, reason: str) -> Path:
        """Sets aside an entry no backend will ever accept, keeping it on disk for an operator."""
        self.rejected.mkdir(exist_ok=True)
        # The reason first: a write that fails (a full disk) leaves the entry in the spool, to be retried.
        (entry.path / "reason.txt").write_text(reason + "\n", encoding="utf-8")
        target = self.rejected / entry.path.name
        os.replace(entry.path, target)
        return target

    def _next_order(self) -> int:
        # Wall-clock nanoseconds keep commit order across restarts; the max() keeps it strictly
        # increasing within a process even if the clock steps back.
        with self._lock:
            self._last_order = max(time.time_ns(), self._last_order + 1)
            return self._last_order
