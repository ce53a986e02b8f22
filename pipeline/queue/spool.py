"""Write-ahead spool: every case reaches local disk before any backend, so an outage loses nothing.

A case is rendered into a staging folder under the spool (its evidence files and ``record.json``,
each fsync'd), then committed by one atomic rename. A drainer thread delivers committed entries
in commit order: the evidence files to the evidence store first, then the record to the case
queue, then removes the entry. When a backend is unreachable the drainer keeps the entry and
retries it (and everything after it, in order) with backoff; a worker killed at any point finds
its committed entries on restart and delivers them. Case ids make each redelivery idempotent: a
case already on the queue is never uploaded or published again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.durable import fsync_directory, write_synced
from pipeline.evidence import EvidenceStore, LocalEvidenceStore
from pipeline.queue.base import CaseQueue
from pipeline.types import BackendUnavailable, CaseNote, CaseRecord

log = logging.getLogger(__name__)

_RECORD = "record.json"
_NOTE = "note.json"
_FILES = "files"


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
        return CaseRecord.from_dict(json.loads((self.path / _RECORD).read_text(encoding="utf-8")))

    def note(self) -> CaseNote:
        return CaseNote.from_dict(json.loads((self.path / _NOTE).read_text(encoding="utf-8")))


class StagedCase:
    """A case being written into the spool; invisible to the drainer until committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = LocalEvidenceStore(path / _FILES)


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
            raise SpoolBusy(f"spool {self.root} is in use by another patrol process; give each worker its own") from None
        # Staging folders of a process that died before committing hold half a case: its
        # violation was never announced, so the next run re-derives it or it never existed.
        for leftover in self._staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        self._lock = threading.Lock()
        self._last_order = 0

    def close(self) -> None:
        self._lock_file.close()

    def stage(self, case_id: str) -> StagedCase:
        if not case_id or "/" in case_id or case_id.startswith("."):
            raise ValueError(f"{case_id!r} cannot name a spool entry")
        path = self._staging / f"{case_id}.{uuid.uuid4().hex}"
        path.mkdir()
        return StagedCase(path)

    def commit(self, staged: StagedCase, record: CaseRecord) -> SpoolEntry:
        """Durably adds the staged case; after this returns, the case survives a power cut."""
        return self._commit(staged, _RECORD, record.case_id, record.to_dict())

    def add_note(self, note: CaseNote) -> SpoolEntry:
        """Durably queues a note; it is delivered after every case committed before it."""
        return self._commit(self.stage(note.case_id), _NOTE, note.case_id, note.to_dict())

    def _commit(self, staged: StagedCase, name: str, case_id: str, content: dict) -> SpoolEntry:
        write_synced(staged.path / name, json.dumps(content, ensure_ascii=False).encode("utf-8"))
        fsync_directory(staged.path)
        final = self.root / f"{self._next_order():020d}--{case_id}"
        os.replace(staged.path, final)
        fsync_directory(self.root)
        return SpoolEntry(final)

    def discard(self, staged: StagedCase) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    def entries(self) -> list[SpoolEntry]:
        """Committed entries in commit order."""
        return [SpoolEntry(p) for p in sorted(self.root.iterdir()) if "--" in p.name and p.is_dir()]

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
        target = self.rejected / entry.path.name
        os.replace(entry.path, target)
        (target / "reason.txt").write_text(reason + "\n", encoding="utf-8")
        return target

    def _next_order(self) -> int:
        # Wall-clock nanoseconds keep commit order across restarts; the max() keeps it strictly
        # increasing within a process even if the clock steps back.
        with self._lock:
            self._last_order = max(time.time_ns(), self._last_order + 1)
            return self._last_order


Listener = Callable[[CaseRecord, bool], None]


class SpoolDrainer:
    """Thread that delivers spooled cases to the evidence store and the case queue, in order."""

    def __init__(self, spool: CaseSpool, store: EvidenceStore, queue: CaseQueue, *,
                 listeners: Iterable[Listener] = (), retry_min_s: float = 0.5, retry_max_s: float = 30.0,
                 max_failures: int = 5) -> None:
        self.spool = spool
        self.store = store
        self.queue = queue
        self.listeners = list(listeners)
        self.delivered = 0  # new cases published
        self.outages = 0  # times a backend became unreachable
        self.backend_error: str | None = None  # set while a backend is unreachable
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._max_failures = max_failures
        self._failures: dict[str, int] = {}
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-drainer", daemon=True)

    def start(self) -> SpoolDrainer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def wait_empty(self, timeout_s: float) -> bool:
        """True once every committed entry is delivered; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        self.wake()
        with self._idle:
            while self.spool.entries():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.2))
        return True

    def drain_once(self) -> int:
        """Delivers entries until the spool is empty or a backend fails; returns how many went."""
        count = 0
        for entry in self.spool.entries():
            self._deliver(entry)
            count += 1
        return count

    def _run(self) -> None:
        delay = self._retry_min_s
        while not self._stop.is_set():
            try:
                self.drain_once()
            except BackendUnavailable as exc:
                if self.backend_error is None:
                    self.outages += 1
                    log.warning("backend unavailable, cases stay in the spool %s: %s", self.spool.root, exc)
                self.backend_error = str(exc)
                self._retry_later(delay)
                delay = min(self._retry_max_s, delay * 2)
                continue
            except Exception as exc:  # noqa: BLE001 - a backend refusing one entry (bad key, permissions)
                self._refused(exc)
                self._retry_later(delay)
                delay = min(self._retry_max_s, delay * 2)
                continue
            if self.backend_error is not None:
                log.warning("backends reachable again; spool delivered")
                self.backend_error = None
            delay = self._retry_min_s
            with self._idle:
                self._idle.notify_all()
            self._wake.wait(1.0)
            self._wake.clear()

    def _retry_later(self, delay: float) -> None:
        # Full jitter, so many workers do not hammer a backend that just came back.
        self._wake.wait(random.uniform(self._retry_min_s, delay))
        self._wake.clear()

    def _refused(self, exc: Exception) -> None:
        entries = self.spool.entries()
        if not entries:
            return
        head = entries[0]
        failures = self._failures[head.path.name] = self._failures.get(head.path.name, 0) + 1
        log.error("delivering spooled case %s failed (%d/%d): %s", head.case_id, failures, self._max_failures, exc)
        if failures >= self._max_failures:
            where = self.spool.reject(head, f"refused {failures} times, last: {exc!r}")
            log.error("spooled case %s set aside in %s; later cases go on", head.case_id, where)
            del self._failures[head.path.name]

    def _deliver(self, entry: SpoolEntry) -> None:
        if entry.is_note:
            self._deliver_note(entry)
            return
        try:
            record = entry.record()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            where = self.spool.reject(entry, f"unreadable record: {exc}")
            log.error("spool entry %s is unreadable and was set aside in %s: %s", entry.path.name, where, exc)
            return
        filed = self.queue.get(record.case_id)
        if filed is None:
            files = entry.files
            for item in record.evidence.values():
                # the evidence lands before the case that points at it is published
                self.store.put(item.key, files.get(item.key), item.content_type)
            is_new = self.queue.publish(record)
        else:  # filed before, e.g. by the run this one restarted: its evidence and sha256s stand
            record, is_new = filed, False
        # Listeners hear of the case before it leaves the spool: whoever waits for an empty spool
        # (a replay writing cases.jsonl, then unhooking its listener) must not miss the last one.
        for listener in tuple(self.listeners):
            try:
                listener(record, is_new)
            except Exception:  # a listener's bug must not hold back a case that is already filed
                log.exception("a listener failed on case %s", record.case_id)
        self.delivered += is_new
        self.spool.remove(entry)

    def _deliver_note(self, entry: SpoolEntry) -> None:
        try:
            self.queue.add_note(entry.note())
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable, or its case was set aside
            where = self.spool.reject(entry, f"undeliverable note: {exc}")
            log.error("spooled note %s set aside in %s: %s", entry.path.name, where, exc)
            return
        self.spool.remove(entry)
