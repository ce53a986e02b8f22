"""A full spool disk as a camera-level alarm: once the cases held in memory meanwhile are all
written, each camera whose cases waited gets one 故障报警 case saying why they came late."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_CAMERA

import pipeline.delivery.spool as spool_module
from pipeline.config import load_camera
from pipeline.delivery import CaseFiler, CaseSpool
from pipeline.engine import CameraPipeline, CaseMaker, Patrol
from pipeline.engine.faults import fault_case_id, spool_faults
from pipeline.evidence import EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.queue import SqliteCaseQueue
from pipeline.types import CaseNote, CaseRecord, Detections, Frame, Violation

MODEL = {"name": "m", "sha256": "0" * 64}
T0 = 1_700_000_000.0


class FullDisk:
    """The spool's writes fail with ENOSPC while ``full`` is set."""

    def __init__(self, monkeypatch) -> None:
        self.full = threading.Event()
        self.refused = 0
        write = spool_module.write_synced

        def write_unless_full(path: Path, data: bytes) -> None:
            if self.full.is_set():
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            write(path, data)

        monkeypatch.setattr(spool_module, "write_synced", write_unless_full)


def make_cases(root: Path) -> CaseMaker:
    filer = CaseFiler(CaseSpool(root / "spool"), LocalEvidenceStore(root / "evidence"),
                      SqliteCaseQueue(root / "cases.sqlite3"), retry_min_s=0.01, retry_max_s=0.05)
    return CaseMaker(EvidenceRenderer(load_event_codes(), "0.1.0"), filer, MODEL)


def camera(camera_id: str) -> CameraPipeline:
    config = load_camera(SAMPLE_CAMERA).model_copy(update={"id": camera_id})
    return CameraPipeline(config, f"live:{camera_id}", wall_clock_ids=True)


def park(pipeline: CameraPipeline, wall0: float, start_s: float = 0.0) -> Violation:
    """A car parked in the sample's no-parking kerb for 22 s from ``start_s``: one case."""
    image = np.zeros((540, 960, 3), np.uint8)
    car = Detections(np.array([(100.0, 400.0, 260.0, 480.0)], np.float32), np.array([0.9], np.float32),
                     np.array([0], np.int32), np.array(["vehicle"]))
    confirmed = []
    for index in range(22 * 5):
        pts = start_s + index / 5
        confirmed += pipeline.step(Frame(pipeline.camera.id, index, pts, wall0 + pts, image), car)
    (violation,) = confirmed
    return violation


def file_while_full(cases: CaseMaker, disk: FullDisk) -> tuple[dict[str, list[str]], float]:
    """Two cases of cam-a, one of cam-b and a note, all confirmed and completed while the disk is
    full; returns each camera's case ids in filing order and a time just before the disk filled."""
    disk.full.set()
    started = time.time()
    filed: dict[str, list[str]] = {}
    a, b = camera("cam-a"), camera("cam-b")
    for pipeline, start_s in ((a, 0.0), (b, 0.0), (a, 100.0)):
        violation = park(pipeline, T0, start_s)
        cases.file(pipeline, violation)
        cases.complete(pipeline, violation.case_id)
        filed.setdefault(pipeline.camera.id, []).append(violation.case_id)
    first = filed["cam-a"][0]
    cases.filer.add_note(CaseNote(f"{first}:n", first, "2023-11-15T06:13:50.000+08:00", "system", "x", "y"))
    assert cases.filer.held == 4 and cases.filer.disk_full and disk.refused
    return filed, started


def test_once_the_disk_has_room_each_camera_whose_cases_waited_gets_one_fault_case_after_them(
        tmp_path: Path, monkeypatch) -> None:
    disk = FullDisk(monkeypatch)
    cases = make_cases(tmp_path)
    delivered: list[str] = []
    cases.filer.listeners.append(lambda record, new: delivered.append(record.case_id))
    patrol = Patrol([], None, cases, loop_files=False, until_stopped=True, print_line=lambda _: None)
    running = threading.Thread(target=patrol.run, daemon=True)
    running.start()
    try:
        filed, full_since = file_while_full(cases, disk)
        time.sleep(0.5)  # retried in vain meanwhile; nothing is filed about a disk still full
        assert cases.filer.held == 4 and delivered == []
        room_at = time.time()
        disk.full.clear()
        deadline = time.monotonic() + 30
        while len(delivered) < 5 and time.monotonic() < deadline:  # the fault cases are filed by the patrol's loop
            time.sleep(0.05)
        assert cases.filer.wait_delivered(timeout_s=30)
        time.sleep(0.5)  # a few more turns of the loop: nothing more is filed
    finally:
        patrol.stop()
        running.join(timeout=30)
    try:
        queue = cases.filer.queue
        assert delivered[:3] == [filed["cam-a"][0], filed["cam-b"][0], filed["cam-a"][1]]  # in filing order
        faults = {queue.get(case_id).camera_id: queue.get(case_id) for case_id in delivered[3:]}
        assert len(delivered) == 5 and sorted(faults) == ["cam-a", "cam-b"]  # one per camera, after them
        for name, record in faults.items():
            assert (record.violation, record.event_code, record.event_name) == ("camera_fault", "0601", "故障报警")
            metadata = json.loads((tmp_path / "evidence" / record.evidence["metadata.json"].key).read_bytes())
            fault, spool = metadata["fault"], metadata["fault"]["spool"]
            assert fault["state"] == "disk_full" and fault["reason"].startswith("the evidence spool took no case")
            assert full_since <= spool["since_wall"] < room_at <= spool["until_wall"]
            assert record.case_id == fault_case_id(name, spool["since_wall"], "spool_outage")
            assert record.dwell_s == pytest.approx(spool["until_wall"] - spool["since_wall"])
            assert spool["case_ids"] == filed[name] and spool["waited"] == spool["written"] == len(filed[name])
            assert spool["path"] == str(tmp_path / "spool") and spool["reason"] == f"disk full at {spool['path']}"
            (note,) = queue.notes(record.case_id)  # what the reviewer reads on the case
            assert note.kind == "spool_outage" and "磁盘已满" in note.text and str(tmp_path / "spool") in note.text
            assert f"摄像头 {name} 的 {len(filed[name])} 个案件在内存中等待" in note.text
    finally:
        cases.filer.close(drain_timeout_s=5)


def test_the_same_outage_is_not_filed_twice_across_a_restart(tmp_path: Path, monkeypatch) -> None:
    disk = FullDisk(monkeypatch)
    cases = make_cases(tmp_path / "first")
    cases.filer.start()
    try:
        file_while_full(cases, disk)
        disk.full.clear()
        assert cases.filer.wait_delivered(timeout_s=30)
        (outage,) = cases.filer.outages_over()
        assert cases.filer.outages_over() == []  # each outage is handed out once
    finally:
        cases.filer.close(drain_timeout_s=5)
    found = spool_faults(outage)
    assert [camera.camera_id for camera, _, _ in found] == ["cam-a", "cam-b"]
    assert [fault for _, fault, _ in found] == [fault for _, fault, _ in spool_faults(outage)]  # deterministic

    # spooled, then the worker killed before delivery: the next run delivers them, files none again
    root = tmp_path / "second"
    dying = make_cases(root)  # never started: nothing delivers
    assert all(dying.file_fault_with_note(*fault) for fault in found)
    assert len(dying.filer.spool.entries()) == 4  # two cases, their two notes
    dying.filer.close(drain_timeout_s=0)
    for _ in range(2):  # the restart, and one more
        restarted = make_cases(root)
        restarted.filer.start()
        try:
            assert not any(restarted.file_fault_with_note(*fault) for fault in found)
            assert restarted.filer.wait_delivered(timeout_s=30)
            queue = restarted.filer.queue
            assert queue.count() == 2
            for _, fault, _ in found:
                assert queue.get(fault.case_id) is not None and len(queue.notes(fault.case_id)) == 1
        finally:
            restarted.filer.close(drain_timeout_s=5)


class Nothing:
    """A detector that finds nothing, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images: list) -> list[Detections]:
        self.calls += len(images)
        return [Detections.empty() for _ in images]


@pytest.mark.realtime  # a live patrol on a file plays it at real speed
def test_the_patrol_keeps_analysing_while_the_disk_is_full_and_files_the_fault_after(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    disk = FullDisk(monkeypatch)
    cases = make_cases(tmp_path)
    delivered: list[CaseRecord] = []
    cases.filer.listeners.append(lambda record, new: delivered.append(record))
    detector = Nothing()
    street = load_camera(SAMPLE_CAMERA)
    patrol = Patrol([street], detector, cases, loop_files=True, print_line=lambda _: None)
    running = threading.Thread(target=patrol.run, daemon=True)
    running.start()
    try:
        disk.full.set()
        pipeline = camera(street.id)  # its cases, as the analysis thread would file them
        violation = park(pipeline, time.time() - 30)
        cases.file(pipeline, violation)
        cases.complete(pipeline, violation.case_id)
        assert cases.filer.held == 1 and cases.filer.disk_full
        before = detector.calls
        time.sleep(2.0)
        assert detector.calls >= before + 5  # analysed at 5/s the while
        assert cases.filer.held == 1 and cases.filer.queue.count() == 0

        disk.full.clear()
        assert cases.filer.wait_delivered(timeout_s=30)
        deadline = time.monotonic() + 10
        while len(delivered) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert patrol.cameras[0].running
    finally:
        patrol.stop()
        running.join(timeout=30)
        cases.filer.close(drain_timeout_s=5)
    assert [record.case_id for record in delivered[:1]] == [violation.case_id]  # the case that waited, then
    (fault,) = delivered[1:]  # its camera's fault case
    assert (fault.violation, fault.camera_id) == ("camera_fault", street.id)
