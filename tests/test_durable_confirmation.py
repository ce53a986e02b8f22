"""A case is durable from the moment it is confirmed (issue 16 item 1).

It goes to the spool at confirmation with the clip recorded so far, pending; the post-roll
completes its clip. A worker killed in between has spooled it: the next run delivers it as it is,
its record saying where its clip ends, and files nothing twice.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from support import PATROL, REPO, SAMPLE_CAMERA, SAMPLE_VIDEO, camera_file, cut_video, wait_for

import pipeline.delivery.spool as spool_module
from pipeline.config import load_camera
from pipeline.delivery import CaseFiler, CaseSpool
from pipeline.engine import CameraPipeline, CaseMaker
from pipeline.engine.episodes import EpisodeKeeper
from pipeline.evidence import EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S
from pipeline.ingest.clip import StreamParams
from pipeline.queue import SqliteCaseQueue, open_queue
from pipeline.types import CaseNote, CaseRecord, Detections, Frame, Violation

MODEL = {"name": "m", "sha256": "0" * 64}
T0 = 1_700_000_000.0
KERB_CAR = (100.0, 400.0, 260.0, 480.0)  # in the sample camera's no-parking kerb (20 s of dwell)


@pytest.fixture(scope="module")
def packets() -> list[tuple]:
    """The sample street's first 40 s of encoded video, demuxed only, as ingest hands it to a ring."""
    with av.open(str(SAMPLE_VIDEO)) as container:
        stream = container.streams.video[0]
        params, found = None, []
        for packet in container.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue
            pts_s, dts_s = float(packet.pts * stream.time_base), float(packet.dts * stream.time_base)
            if dts_s > 40:
                break
            params = params or StreamParams.from_stream(stream, packet)
            found.append((bytes(packet), pts_s, dts_s, packet.is_keyframe, params))
    return found


class Street:
    """A live camera with a car parked in its no-parking kerb from 0 s, analysed 5 frames a
    second; its ring gets the video up to each analysed frame, as ingest would feed it."""

    def __init__(self, packets: list[tuple], wall0: float = T0) -> None:
        self.camera = CameraPipeline(load_camera(SAMPLE_CAMERA), "live:shuangshan-sample", wall_clock_ids=True)
        self.wall0 = wall0
        self._packets = list(packets)
        self._image = np.zeros((540, 960, 3), np.uint8)
        self._car = Detections(np.array([KERB_CAR], np.float32), np.array([0.9], np.float32),
                               np.array([0], np.int32), np.array(["vehicle"]))
        self._index = 0

    def play(self, until_s: float) -> tuple[list[Violation], list[str]]:
        """The violations confirmed and the clips whose post-roll was seen on the way to ``until_s``."""
        confirmed, recorded = [], []
        while (pts := self._index / 5) <= until_s:
            while self._packets and self._packets[0][2] <= pts:
                data, pts_s, dts_s, keyframe, params = self._packets.pop(0)
                self.camera.ring.add(data, pts_s=pts_s, dts_s=dts_s, keyframe=keyframe, params=params)
            frame = Frame(self.camera.camera.id, self._index, pts, self.wall0 + pts, self._image)
            confirmed += self.camera.step(frame, self._car)
            recorded += self.camera.clips_recorded()
            self._index += 1
        return confirmed, recorded


def _worker(folder: Path) -> CaseMaker:
    """One run of a worker over ``folder`` (spool, evidence, queue); its drainer is driven by hand."""
    filer = CaseFiler(CaseSpool(folder / "spool"), LocalEvidenceStore(folder / "evidence"),
                      SqliteCaseQueue(folder / "cases.sqlite3"), retry_min_s=0.01, retry_max_s=0.05)
    return CaseMaker(EvidenceRenderer(load_event_codes(), "0.1.0"), filer, MODEL)


def _dies(cases: CaseMaker) -> None:
    """What a SIGKILL leaves: the files as they are; the spool's lock and what was in memory go."""
    cases.filer.close(drain_timeout_s=0)


def _spooled(cases: CaseMaker) -> list[CaseRecord]:
    return [entry.record() for entry in cases.filer.spool.entries()]


def _assert_sealed(record: CaseRecord, evidence: LocalEvidenceStore) -> dict:
    """Every evidence file has the sha256 its record gives; metadata.json carries the others'. Its metadata."""
    for item in record.evidence.values():
        assert hashlib.sha256(evidence.get(item.key)).hexdigest() == item.sha256, item.key
    metadata = json.loads(evidence.get(record.evidence["metadata.json"].key))
    assert metadata["evidence"] == {name: item.to_dict() for name, item in record.evidence.items()
                                    if name != "metadata.json"}
    return metadata


def _clip_seconds(clip: bytes) -> float:
    with av.open(io.BytesIO(clip)) as container:
        stream = container.streams.video[0]
        times = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None]
    return max(times) - min(times)


def test_a_case_is_on_the_spool_the_moment_it_is_confirmed(tmp_path: Path, packets) -> None:
    cases, street = _worker(tmp_path), Street(packets)
    try:
        (violation,), recorded = street.play(21.0)
        assert recorded == [] and 20.0 <= violation.confirmed_s < 21.0
        cases.file(street.camera, violation)

        (record,) = _spooled(cases)  # before its post-roll: a kill from now on cannot lose it
        assert record.case_id == violation.case_id
        assert record.clip_until_s == pytest.approx(street.camera.ring.span[1], abs=1e-3)
        assert record.clip_until_s < violation.confirmed_s + CLIP_AFTER_S and "clip.mp4" in record.evidence
        _assert_sealed(record, cases.filer.spool.entries()[0].files)
        # its episode may be saved as filed: a restart does not confirm the car again
        assert street.camera.unfiled_case_ids() == frozenset()
        saved = EpisodeKeeper.snapshot([street.camera])[street.camera.camera.id]
        assert [episode["confirmed"] for episode in saved["no-parking-kerb/illegal_parking"]] == [True]
        assert cases.filer.drainer.drain_once() == 0  # its clip is still being recorded
        assert cases.filer.queue.get(violation.case_id) is None
    finally:
        cases.filer.close(drain_timeout_s=0)


def test_the_post_roll_completes_the_clip_as_rendering_after_it_would_have(tmp_path: Path, packets) -> None:
    cases, street = _worker(tmp_path), Street(packets)
    try:
        (violation,), _ = street.play(21.0)
        cases.file(street.camera, violation)
        _, recorded = street.play(violation.confirmed_s + CLIP_AFTER_S + 0.2)
        assert recorded == [violation.case_id]
        cases.complete(street.camera, violation.case_id)

        (record,) = _spooled(cases)  # the pending entry is gone, replaced
        assert record.clip_until_s is None
        whole = cases.render(street.camera, violation)  # what filing once the post-roll was in made
        assert record.to_dict() == whole.record.to_dict()
        assert "clip_until_s" not in json.dumps(record.to_dict())
        assert cases.filer.drainer.drain_once() == 1
        evidence = cases.filer.store
        metadata = _assert_sealed(cases.filer.queue.get(violation.case_id), evidence)
        assert "clip_until_s" not in metadata
        assert evidence.get(record.evidence["clip.mp4"].key) == street.camera.ring.clip(
            violation.confirmed_s - CLIP_BEFORE_S, violation.confirmed_s + CLIP_AFTER_S)
        assert evidence.get(record.evidence["metadata.json"].key) == whole.files[record.evidence["metadata.json"].key]
    finally:
        cases.filer.close(drain_timeout_s=0)


def test_a_pending_case_left_by_a_dead_run_is_delivered_once_saying_its_clip_is_short(tmp_path: Path,
                                                                                       packets) -> None:
    dying, street = _worker(tmp_path), Street(packets)
    (violation,), _ = street.play(21.0)
    dying.file(street.camera, violation)
    until_s = street.camera.ring.span[1]
    _dies(dying)  # inside the post-roll

    restarted = _worker(tmp_path)
    try:
        assert restarted.filer.drainer.drain_once() == 1  # not pending for this run: delivered as it is
        record = restarted.filer.queue.get(violation.case_id)
        assert record.clip_until_s == pytest.approx(until_s, abs=1e-3)
        assert _assert_sealed(record, restarted.filer.store)["clip_until_s"] == record.clip_until_s
        short = _clip_seconds(restarted.filer.store.get(record.evidence["clip.mp4"].key))
        street.play(25.0)
        whole = _clip_seconds(street.camera.ring.clip(violation.confirmed_s - CLIP_BEFORE_S,
                                                      violation.confirmed_s + CLIP_AFTER_S))
        assert short < whole - 3.0

        restarted.file(street.camera, violation)  # the same car confirmed again by the restarted run
        restarted.complete(street.camera, violation.case_id)
        assert restarted.filer.drainer.drain_once() == 0 and restarted.filer.queue.count() == 1
    finally:
        restarted.filer.close(drain_timeout_s=0)


def test_a_stream_that_ends_inside_the_post_roll_files_the_clip_there_is_saying_so(tmp_path: Path,
                                                                                    packets) -> None:
    cases, street = _worker(tmp_path), Street(packets)
    try:
        (violation,), _ = street.play(21.0)
        cases.file(street.camera, violation)
        street.play(22.6)
        assert street.camera.flush() == [violation.case_id] and street.camera.clips_recorded() == []
        cases.complete(street.camera, violation.case_id, post_roll_seen=False)

        assert cases.filer.drainer.drain_once() == 1
        record = cases.filer.queue.get(violation.case_id)
        assert record.clip_until_s == pytest.approx(street.camera.ring.span[1], abs=1e-3)
        assert violation.confirmed_s + 1.5 < record.clip_until_s < violation.confirmed_s + CLIP_AFTER_S
        _assert_sealed(record, cases.filer.store)
    finally:
        cases.filer.close(drain_timeout_s=0)


@pytest.mark.parametrize("dies", ["before completing", "inside completing", "after completing"])
def test_a_restart_files_nothing_twice(tmp_path: Path, packets, dies: str) -> None:
    dying, street = _worker(tmp_path), Street(packets)
    (violation,), _ = street.play(21.0)
    dying.file(street.camera, violation)
    street.play(violation.confirmed_s + CLIP_AFTER_S + 0.2)
    spool = dying.filer.spool
    if dies == "inside completing":  # the completed case committed, the pending one not removed yet
        spool.complete = spool.commit
    if dies != "before completing":
        dying.complete(street.camera, violation.case_id)
    _dies(dying)

    restarted = _worker(tmp_path)
    try:
        (left,) = _spooled(restarted)
        assert restarted.filer.drainer.drain_once() == 1
        restarted.file(street.camera, violation)  # and confirmed again
        restarted.complete(street.camera, violation.case_id)
        assert restarted.filer.drainer.drain_once() == 0
        assert restarted.filer.queue.count() == 1 and restarted.filer.spool.entries() == []
        record = restarted.filer.queue.get(violation.case_id)
        assert record == left and (record.clip_until_s is None) == (dies != "before completing")
        _assert_sealed(record, restarted.filer.store)
    finally:
        restarted.filer.close(drain_timeout_s=0)


def test_cases_behind_a_clip_still_recorded_go_and_its_notes_wait(tmp_path: Path, packets) -> None:
    cases, first, second = _worker(tmp_path), Street(packets), Street(packets, wall0=T0 + 100)
    try:
        (waiting,), _ = first.play(21.0)
        cases.file(first.camera, waiting)
        (going,), _ = second.play(25.0)
        cases.file(second.camera, going)
        cases.complete(second.camera, going.case_id)
        note = CaseNote(f"{waiting.case_id}:n", waiting.case_id, "2023-11-15T06:13:50.000+08:00", "system",
                        "camera_recovered", "back")
        cases.filer.add_note(note)

        assert cases.filer.drainer.drain_once() == 1  # not held up by the clip being recorded before it
        assert cases.filer.queue.get(going.case_id) is not None
        first.play(25.0)
        cases.complete(first.camera, waiting.case_id)  # its entry now comes after its note's
        assert cases.filer.drainer.drain_once() == 1
        assert cases.filer.drainer.drain_once() == 1
        assert cases.filer.queue.notes(waiting.case_id) == [note] and cases.filer.drainer.rejected == 0
    finally:
        cases.filer.close(drain_timeout_s=0)


def test_a_full_disk_at_the_end_of_the_post_roll_keeps_the_case_and_completes_it_when_room_returns(
        tmp_path: Path, packets, monkeypatch) -> None:
    full = threading.Event()
    write = spool_module.write_synced

    def write_unless_full(path: Path, data: bytes) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, data)

    monkeypatch.setattr(spool_module, "write_synced", write_unless_full)
    cases, street = _worker(tmp_path), Street(packets)
    try:
        (violation,), _ = street.play(21.0)
        cases.file(street.camera, violation)
        street.play(25.0)
        full.set()
        cases.complete(street.camera, violation.case_id)
        assert cases.filer.disk_full and cases.filer.held == 0  # the case is on the spool, its clip short
        (record,) = _spooled(cases)
        assert record.clip_until_s is not None and cases.filer.drainer.drain_once() == 0

        full.clear()
        cases.filer.start()
        assert cases.filer.wait_delivered(timeout_s=30)
        assert cases.filer.queue.get(violation.case_id).clip_until_s is None
    finally:
        cases.filer.close(drain_timeout_s=5)


# ---- a real worker killed around a confirmation ----

CAR_FROM_S = 10.0  # the sample's first parked car stands in the kerb from here on
KILL_DWELL_S = 4.0  # every rule's dwell: the car is confirmed ~4 s into the cut, its post-roll ends ~8 s in


class Worker:
    """A `patrol run` process over ``camera``; its output, and when it began watching."""

    def __init__(self, camera: Path, var: Path, *options: str) -> None:
        self.var = var
        self.process = subprocess.Popen(
            [*PATROL, "run", str(camera), "--var", str(var), "--metrics", "off", "--health-every", "600", *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.watching: float | None = None  # monotonic time of the "patrol: ..." line: stream time 0, nearly
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith("patrol: ") and self.watching is None:
                self.watching = time.monotonic()
            self.lines.append(line.rstrip("\n"))

    def at(self, stream_s: float, *, unless: Callable[[], object] = lambda: False) -> None:
        """Waits until the worker's stream is about ``stream_s`` seconds in, or ``unless`` holds before."""
        wait_for(lambda: self.watching is not None, 120, "the worker to start watching", detail=self.output)
        wait_for(lambda: time.monotonic() >= self.watching + stream_s or unless(), 60, "the stream's time")

    def filed(self) -> list[str]:
        """The case ids this worker published as new."""
        return [line.split()[1] for line in self.lines if line.startswith("[case] ") and "(already filed)" not in line]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(10)
        assert self.process.returncode == -signal.SIGKILL, self.output()

    def finish(self) -> None:
        self.process.wait(120)
        self._reader.join(10)
        assert self.process.returncode == 0, self.output()

    def output(self) -> str:
        return "\n".join(self.lines[-30:])


@pytest.fixture
def start_worker():
    """``Worker`` as a factory; whatever worker is still running when the test ends is killed."""
    started: list[Worker] = []

    def start(*args) -> Worker:
        started.append(Worker(*args))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def _spool_records(var: Path) -> list[dict]:
    spool = var / "spool"
    return [json.loads((entry / "record.json").read_text(encoding="utf-8"))
            for entry in sorted(spool.iterdir()) if "--" in entry.name]


@pytest.mark.realtime  # three workers watch a 12 s video in real time, each killed, each restarted
def test_a_worker_killed_around_a_confirmation_files_every_case_exactly_once(tmp_path: Path, start_worker) -> None:
    video = cut_video(SAMPLE_VIDEO, tmp_path / "parked.mp4", start_s=CAR_FROM_S, seconds=CAR_FROM_S + 12)
    camera = camera_file(tmp_path / "camera.yaml", dwell_s=KILL_DWELL_S, url=str(video))
    killed = {}
    # Before the confirmation (~4.2 s in); inside its post-roll, 0.5 s after its case is spooled (or, failing
    # that, 0.2 s before the post-roll ends, ~8.2 s in, and later by the analysis' lag); after its delivery.
    for instant in ("before", "in post-roll", "after delivery"):
        worker = start_worker(camera, tmp_path / instant.replace(" ", "-"))
        if instant == "before":
            worker.at(2.0)
        elif instant == "in post-roll":
            worker.at(KILL_DWELL_S + 3.5, unless=lambda w=worker: _spool_records(w.var))
            time.sleep(0.5)
        else:
            wait_for(lambda w=worker: w.filed(), 60, "the case delivered", detail=worker.output)
        worker.kill()
        killed[instant] = worker

    # the restarts: the same spool, queue and camera; each drains what its worker left and stops
    restarted = {instant: start_worker(camera, worker.var, "--duration", "1") for instant, worker in killed.items()}
    for instant, worker in restarted.items():
        worker.finish()
        with open_queue(f"sqlite:///{worker.var / 'queue' / 'cases.sqlite3'}") as queue:
            records = [delivery.record for delivery in queue.consume("auditor", count=10)]
        filed = killed[instant].filed() + worker.filed()
        expected = 0 if instant == "before" else 1
        print(f"killed {instant}: cases expected {expected}, found {len(records)}, filed {len(filed)} time(s)")
        assert len(records) == expected and sorted(filed) == [r.case_id for r in records], instant
        assert _spool_records(worker.var) == [], instant
        for record in records:
            _assert_sealed(record, LocalEvidenceStore(worker.var / "evidence"))
            # killed inside the post-roll, its case says its clip is short: its worker did not complete it
            assert (record.clip_until_s is not None) == (instant == "in post-roll"), instant
            if record.clip_until_s is not None:
                assert record.confirmed_s < record.clip_until_s < record.confirmed_s + CLIP_AFTER_S
