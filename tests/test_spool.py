"""The write-ahead spool on the embedded backends: order, crash leftovers, idempotent redelivery."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from queue_contract import make_record
from support import wait_for

from pipeline.delivery import CaseSpool, SpoolDrainer
from pipeline.evidence import LocalEvidenceStore, RenderedCase
from pipeline.queue import SqliteCaseQueue
from pipeline.types import CaseNote, CaseRecord, EvidenceItem


def rendered_case(record: CaseRecord, frame_jpg: bytes, metadata: bytes) -> RenderedCase:
    """A rendered case with two evidence files, as the evidence renderer hands it over."""
    prefix = f"2024-05-01/cam-07/{record.case_id}"
    files = {f"{prefix}/frame.jpg": (frame_jpg, "image/jpeg"),
             f"{prefix}/metadata.json": (metadata, "application/json")}
    evidence = {key.rsplit("/", 1)[1]: EvidenceItem(key, hashlib.sha256(data).hexdigest(), content_type)
                for key, (data, content_type) in files.items()}
    return RenderedCase(replace(record, evidence=evidence), {key: data for key, (data, _) in files.items()})


def spool_case(spool: CaseSpool, index: int) -> CaseRecord:
    """Commits a case with two evidence files, as the case filer does."""
    case = rendered_case(make_record(index), f"jpeg {index}".encode(), b'{"n": %d}' % index)
    spool.commit(case)
    return case.record


def refuse_writes(store: LocalEvidenceStore, monkeypatch, refusal: Callable[[], Exception | None]) -> None:
    """The store's writes fail with what ``refusal`` gives at each (None: that one goes through)."""
    write = store._write

    def refused_or_written(key: str, *args) -> None:
        if (error := refusal()) is not None:
            raise error
        write(key, *args)

    monkeypatch.setattr(store, "_write", refused_or_written)


@pytest.fixture
def backends(tmp_path: Path):
    store = LocalEvidenceStore(tmp_path / "evidence")
    queue = SqliteCaseQueue(tmp_path / "cases.sqlite3")
    yield store, queue
    queue.close()


def test_cases_reach_store_and_queue_in_commit_order(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    records = [spool_case(spool, i) for i in range(5)]
    heard: list[tuple[str, bool]] = []
    drainer = SpoolDrainer(spool, store, queue, listeners=[lambda r, new: heard.append((r.case_id, new))])

    assert drainer.drain_once() == 5

    assert heard == [(r.case_id, True) for r in records]
    assert [d.record for d in queue.consume("reviewer", count=10)] == records
    for record in records:
        for item in record.evidence.values():
            assert store.sha256_of(item.key) == item.sha256
    assert spool.entries() == []


def test_committed_cases_survive_a_crash_and_half_written_ones_vanish(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    committed = spool_case(spool, 1)
    half = tmp_path / "spool" / ".staging" / "P-half-written.0123"  # what a worker killed mid-commit leaves
    (half / "files").mkdir(parents=True)
    (half / "files" / "frame.jpg").write_bytes(b"partial")

    spool.close()  # the process dies: the kernel drops its lock
    reopened = CaseSpool(tmp_path / "spool")  # the restarted worker
    assert [e.case_id for e in reopened.entries()] == [committed.case_id]
    assert not half.exists()
    SpoolDrainer(reopened, store, queue).drain_once()
    assert queue.get(committed.case_id) == committed
    assert queue.count() == 1


def test_case_already_on_the_queue_is_neither_uploaded_nor_published_again(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    first = spool_case(spool, 1)
    SpoolDrainer(spool, store, queue).drain_once()
    key = first.evidence["frame.jpg"].key
    stored = store.get(key)

    again = CaseSpool(tmp_path / "spool-of-a-rerun")
    rerun = rendered_case(make_record(1), b"different bytes of a rerun", b'{"n": 1}')
    assert rerun.record.evidence["frame.jpg"].key == key
    again.commit(rerun)
    heard: list[tuple[CaseRecord, bool]] = []
    SpoolDrainer(again, store, queue, listeners=[lambda r, new: heard.append((r, new))]).drain_once()

    assert heard == [(first, False)]
    assert store.get(key) == stored
    assert queue.count() == 1
    assert again.entries() == []


def test_unreadable_entry_is_set_aside_and_later_cases_go_on(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    broken = spool_case(spool, 1)
    good = spool_case(spool, 2)
    (spool.entries()[0].path / "record.json").write_text("{not json", encoding="utf-8")

    SpoolDrainer(spool, store, queue).drain_once()

    assert queue.get(broken.case_id) is None
    assert queue.get(good.case_id) == good
    aside = list(spool.rejected.iterdir())
    assert [p.name.split("--", 1)[1] for p in aside] == [broken.case_id]
    assert "unreadable record" in (aside[0] / "reason.txt").read_text()


def test_only_malformed_entries_are_set_aside_one_at_a_time_and_counted(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    records = [spool_case(spool, i) for i in range(6)]
    entries = spool.entries()
    (entries[0].path / "record.json").write_text("{not json", encoding="utf-8")
    shape = json.loads((entries[2].path / "record.json").read_text(encoding="utf-8"))
    del shape["camera_id"]
    (entries[2].path / "record.json").write_text(json.dumps(shape), encoding="utf-8")
    (entries[4].path / "files" / records[4].evidence["frame.jpg"].key).unlink()
    drainer = SpoolDrainer(spool, store, queue)

    assert drainer.drain_once() == 6

    assert drainer.rejected == 3
    assert [queue.get(r.case_id) for r in records[1::2]] == records[1::2]
    aside = {p.name.split("--", 1)[1]: (p / "reason.txt").read_text() for p in spool.rejected.iterdir()}
    assert set(aside) == {records[0].case_id, records[2].case_id, records[4].case_id}
    assert "camera_id" in aside[records[2].case_id] and "evidence missing" in aside[records[4].case_id]
    assert spool.entries() == []


def test_a_full_evidence_disk_is_waited_out_and_nothing_is_set_aside(tmp_path: Path, backends, monkeypatch) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    reported: list[str | None] = []  # what the drainer said at each refused try but the first

    def full_for_a_while() -> OSError | None:  # far more refused tries than the old limit of 5
        if len(reported) < 12:
            reported.append(drainer.backend_error)
            return OSError(errno.ENOSPC, "No space left on device")
        return None

    refuse_writes(store, monkeypatch, full_for_a_while)
    drainer = SpoolDrainer(spool, store, queue, retry_min_s=0.01, retry_max_s=0.02).start()
    try:
        record = spool_case(spool, 1)
        drainer.wake()
        assert drainer.wait_empty(timeout_s=30)
        assert not spool.rejected.exists()
        assert queue.get(record.case_id) == record
        assert len(reported) == 12 and drainer.rejected == 0 and drainer.outages == 1
        assert "No space left on device" in reported[-1] and drainer.backend_error is None
    finally:
        drainer.stop()


def test_a_locked_queue_database_is_waited_out_and_nothing_is_set_aside(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path / "evidence")
    queue = SqliteCaseQueue(tmp_path / "cases.sqlite3", busy_timeout_s=0.01)
    other = sqlite3.connect(tmp_path / "cases.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    spool = CaseSpool(tmp_path / "spool")
    drainer = SpoolDrainer(spool, store, queue, retry_min_s=0.01, retry_max_s=0.02).start()
    try:
        record = spool_case(spool, 1)
        drainer.wake()
        time.sleep(1.0)  # dozens of tries at this back-off, each refused
        reported = drainer.backend_error
        other.execute("ROLLBACK")
        assert drainer.wait_empty(timeout_s=30)
        assert not spool.rejected.exists()
        assert queue.get(record.case_id) == record
        assert drainer.rejected == 0 and "database is locked" in reported
    finally:
        drainer.stop()
        other.close()
        queue.close()


def test_a_drainer_waited_on_tries_each_second_instead_of_backing_off(tmp_path: Path, backends, monkeypatch) -> None:
    """A replay's end or a worker's shutdown waits for delivery: the backend back, the case goes
    within a second or so, not after the back-off's next wait (here a minute, longer than the wait)."""
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    down = threading.Event()
    down.set()
    refuse_writes(store, monkeypatch, lambda: ConnectionError("evidence store unreachable") if down.is_set() else None)
    drainer = SpoolDrainer(spool, store, queue, retry_min_s=60.0, retry_max_s=60.0).start()
    try:
        record = spool_case(spool, 1)
        drainer.wake()
        wait_for(lambda: drainer.backend_error is not None, 10, "the first try failing")  # the next: a minute off
        threading.Timer(1.0, down.clear).start()
        assert drainer.wait_empty(timeout_s=10)
        assert queue.get(record.case_id) == record and drainer.outages == 1
    finally:
        drainer.stop()


def test_drainer_thread_delivers_what_is_committed_while_it_runs(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    delivered = threading.Event()
    drainer = SpoolDrainer(spool, store, queue, listeners=[lambda r, new: delivered.set()]).start()
    try:
        record = spool_case(spool, 3)
        drainer.wake()
        assert drainer.wait_empty(timeout_s=30)
        assert delivered.is_set()
        assert queue.get(record.case_id) == record
    finally:
        drainer.stop()


def test_an_empty_spool_means_every_listener_has_heard_of_every_case(tmp_path: Path, backends) -> None:
    """A replay waits for an empty spool, then unhooks the listener that writes cases.jsonl: a
    listener still busy with the last case must hold the spool open, or that case goes unlisted."""
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    heard: list[str] = []

    def slow_listener(record: CaseRecord, is_new: bool) -> None:
        time.sleep(0.6)  # longer than wait_empty's poll
        heard.append(record.case_id)

    drainer = SpoolDrainer(spool, store, queue, listeners=[slow_listener]).start()
    try:
        records = [spool_case(spool, index) for index in range(2)]
        drainer.wake()
        assert drainer.wait_empty(timeout_s=30)
        assert heard == [record.case_id for record in records]
    finally:
        drainer.stop()


def test_a_failing_listener_does_not_hold_back_delivery(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")

    def broken_listener(record: CaseRecord, is_new: bool) -> None:
        raise RuntimeError("listener bug")

    drainer = SpoolDrainer(spool, store, queue, listeners=[broken_listener]).start()
    try:
        record = spool_case(spool, 5)
        drainer.wake()
        assert drainer.wait_empty(timeout_s=30)
        assert queue.get(record.case_id) == record and not spool.rejected.exists()
    finally:
        drainer.stop()


def test_a_case_id_that_cannot_name_a_folder_is_refused(tmp_path: Path) -> None:
    spool = CaseSpool(tmp_path / "spool")
    for bad in ("", "../escape", ".hidden"):
        with pytest.raises(ValueError, match="cannot name a spool entry"):
            spool.commit(RenderedCase(replace(make_record(1), case_id=bad, evidence={}), {}))


def test_a_note_follows_its_case_and_is_added_once(tmp_path: Path, backends) -> None:
    store, queue = backends
    spool = CaseSpool(tmp_path / "spool")
    record = spool_case(spool, 1)
    note = CaseNote("N-1", record.case_id, "2024-05-01T08:30:00.000+08:00", "system", "camera_recovered",
                    "camera back after 31 min")
    spool.add_note(note)
    spool.add_note(note)  # a retried note

    SpoolDrainer(spool, store, queue).drain_once()

    assert queue.notes(record.case_id) == [note]
    assert spool.entries() == []


def test_a_second_process_cannot_share_a_spool(tmp_path: Path) -> None:
    held = CaseSpool(tmp_path / "spool")
    script = f"from pipeline.delivery import CaseSpool; CaseSpool({str(tmp_path / 'spool')!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "SpoolBusy" in result.stderr and "in use by another patrol process" in result.stderr
    held.close()


def test_a_spool_written_before_the_delivery_package_drains_after_the_upgrade(tmp_path: Path, backends) -> None:
    """tests/data/spool-06fda5a: one case (four pictures, metadata) and a note, as the worker of
    commit 06fda5a spooled them while its backends were away."""
    store, queue = backends
    shutil.copytree(Path(__file__).parent / "data" / "spool-06fda5a", tmp_path / "spool")
    spool = CaseSpool(tmp_path / "spool")
    heard: list[tuple[str, bool]] = []

    drainer = SpoolDrainer(spool, store, queue, listeners=[lambda r, new: heard.append((r.case_id, new))])
    assert drainer.drain_once() == 2

    assert heard == [("P-0123456789abcdef", True)] and spool.entries() == []
    record = queue.get("P-0123456789abcdef")
    assert set(record.evidence) == {"frame.jpg", "annotated.jpg", "crop.jpg", "first_seen.jpg", "metadata.json"}
    for item in record.evidence.values():
        assert hashlib.sha256(store.get(item.key)).hexdigest() == item.sha256
    assert [note.text for note in queue.notes(record.case_id)] == ["note text"]
