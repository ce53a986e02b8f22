"""The engine's own rooms, apart from any stream: composition, the per-frame step, episode keeping,
a live camera's fault policy."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SAMPLE_CAMERA

import pipeline.delivery.spool as spool_module
from pipeline.config import Workspace, load_camera
from pipeline.delivery import CaseFiler, CaseSpool
from pipeline.engine import (
    BackendOptions,
    CameraPipeline,
    CaseMaker,
    OptionError,
    Patrol,
    ReplaySummary,
    StageTimer,
    build_backends,
)
from pipeline.engine.episodes import EpisodeKeeper
from pipeline.engine.faults import MAIN_STREAM, FaultWatch, fault_case_id
from pipeline.engine.health import spool_line
from pipeline.engine.live_camera import CameraEvents, PatrolCamera
from pipeline.evidence import EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.evidence.render import CameraFault
from pipeline.ingest import SourceStats, StateChange
from pipeline.queue import SqliteCaseQueue
from pipeline.rules.memory import FileEpisodeMemory
from pipeline.types import BackendUnavailable, CaseNote, Detections, Frame
from pipeline.vocabulary import CameraState

MODEL = {"name": "m", "sha256": "0" * 64}
T0 = 1_700_000_000.0


def test_the_embedded_default_lives_in_the_workspace(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "var")
    backends = build_backends(BackendOptions(workspace, environ={}), MODEL)
    try:
        assert backends.queue_url == f"sqlite:///{workspace.queue_db}"
        assert backends.evidence_root == workspace.evidence.resolve()
        assert backends.filer.spool.root == workspace.spool
    finally:
        backends.filer.close(drain_timeout_s=0)


def test_the_environment_chooses_the_production_backends(tmp_path: Path) -> None:
    environ = {"REDIS_URL": "redis://127.0.0.1:1/0"}  # opened lazily: nothing listens there
    backends = build_backends(BackendOptions(Workspace(tmp_path), environ=environ), MODEL)
    try:
        assert backends.queue_url == "redis://127.0.0.1:1/0"
    finally:
        backends.filer.close(drain_timeout_s=0)


@pytest.mark.parametrize(("options", "named"), [
    ({"queue_url": "ftp://somewhere"}, "--queue / REDIS_URL"),
    ({"event_codes": "/no/such/table.yaml"}, "--event-codes /no/such/table.yaml"),
])
def test_an_unusable_option_is_named(tmp_path: Path, options: dict, named: str) -> None:
    with pytest.raises(OptionError, match=named):
        build_backends(BackendOptions(Workspace(tmp_path), environ={}, **options), MODEL)


def test_a_second_process_on_the_same_spool_is_refused_naming_the_option(tmp_path: Path) -> None:
    first = build_backends(BackendOptions(Workspace(tmp_path), environ={}), MODEL)
    try:
        import subprocess
        import sys

        script = ("from pathlib import Path; from pipeline.config import Workspace; "
                  "from pipeline.engine import BackendOptions, build_backends; "
                  f"build_backends(BackendOptions(Workspace(Path({str(tmp_path)!r})), environ={{}}), {MODEL!r})")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode != 0 and "OptionError: --spool:" in result.stderr
    finally:
        first.filer.close(drain_timeout_s=0)


def _car(box=(100.0, 300.0, 220.0, 380.0)) -> Detections:
    return Detections(np.array([box], np.float32), np.array([0.9], np.float32), np.array([0], np.int32),
                      np.array(["vehicle"]))


def test_step_times_tracking_and_rules_and_reuses_the_last_detections_when_gated() -> None:
    camera = CameraPipeline(load_camera(SAMPLE_CAMERA), "test")
    image = np.zeros((540, 960, 3), np.uint8)
    timer = StageTimer()
    camera.step(Frame("shuangshan-sample", 0, 0.0, T0, image), _car(), timer)
    camera.step(Frame("shuangshan-sample", 1, 0.2, T0 + 0.2, image), None, timer)
    assert set(timer.seconds) == {"track", "rules"} and all(s > 0 for s in timer.seconds.values())
    assert camera.gated == 1 and camera.stats.analysed == 2


class FlakyMemory:
    def __init__(self) -> None:
        self.saved: list[dict] = []

    def load(self, camera_id: str) -> dict:
        raise BackendUnavailable("redis is away")

    def save(self, snapshots: dict) -> None:
        raise OSError(28, "No space left on device")


def test_unreachable_episode_memory_costs_the_episodes_not_the_camera(caplog) -> None:
    keeper = EpisodeKeeper(FlakyMemory(), every_s=60)
    camera = CameraPipeline(load_camera(SAMPLE_CAMERA), "test")
    with caplog.at_level(logging.WARNING):
        keeper.restore(camera)
        keeper.store(keeper.snapshot([camera]))
    assert "out of reach" in caplog.text and "No space left on device" in caplog.text
    assert not keeper.due()  # not before every_s


def _live_camera(state: CameraState, watch: FaultWatch) -> PatrolCamera:
    history = [StateChange("cam-1", CameraState.LIVE, CameraState.OFFLINE, T0, "connection reset")]
    stats = SourceStats()
    source = SimpleNamespace(state=state, last_error="connection refused", stats=stats, history=history)
    pipeline = CameraPipeline(load_camera(SAMPLE_CAMERA), "test")
    return PatrolCamera(pipeline, source, CameraEvents(), watch, threading.Event())


def test_a_camera_down_past_its_threshold_files_a_fault_case_and_a_note_when_back() -> None:
    watch = FaultWatch("cam-1", threshold_s=60, started_wall=T0)
    camera = _live_camera(CameraState.OFFLINE, watch)
    assert camera.check_faults(T0 + 30) is None
    fault, told = camera.check_faults(T0 + 61)
    assert isinstance(fault, CameraFault) and fault.state == "offline" and fault.reason == "connection refused"
    assert fault.history == (("live", "offline", T0, "connection reset"),)
    # the reviewer is told, in Chinese, what failed and what to do
    assert told.case_id == fault.case_id and told.kind == "camera_down"
    assert told.text.startswith("摄像头 shuangshan-sample 已 1.0 分钟没有画面（离线：connection refused）")
    assert "请安排检修" in told.text
    camera.source.state = CameraState.LIVE
    note = camera.check_faults(T0 + 600)
    assert isinstance(note, CaseNote) and note.case_id == fault.case_id
    assert note.text == "摄像头 shuangshan-sample 中断 10.0 分钟后已恢复画面。"
    assert camera.check_faults(T0 + 601) is None


def test_a_main_stream_down_past_the_threshold_files_one_fault_case_saying_so_and_a_note_when_back() -> None:
    camera = _live_camera(CameraState.LIVE, FaultWatch("cam-1", threshold_s=60, started_wall=T0))
    camera.source.main = main = SimpleNamespace(
        state=CameraState.OFFLINE, last_error="camera cam-1: main stream: connection refused",
        history=[StateChange("cam-1", CameraState.LIVE, CameraState.OFFLINE, T0, "connection reset")])
    camera.main_faults = FaultWatch("cam-1", threshold_s=60, started_wall=T0, cause=MAIN_STREAM)
    assert camera.check_main_stream(T0 + 30) is None
    fault, note = camera.check_main_stream(T0 + 61)
    assert camera.check_faults(T0 + 61) is None  # the camera itself delivers its sub-stream
    assert fault.state == "main_offline" and fault.reason == "camera cam-1: main stream: connection refused"
    assert fault.case_id.startswith("F-") and fault.case_id != fault_case_id("cam-1", T0)  # not the camera's case
    assert note.case_id == fault.case_id and note.kind == MAIN_STREAM and "证据图片和视频取自子码流" in note.text
    assert camera.check_main_stream(T0 + 62) is None  # one case an outage
    camera.source.state = CameraState.OFFLINE  # the whole camera down: that is the camera's fault case
    assert camera.check_main_stream(T0 + 300) is None
    camera.source.state = main.state = CameraState.LIVE
    back = camera.check_main_stream(T0 + 600)
    assert isinstance(back, CaseNote) and back.case_id == fault.case_id
    assert back.text == "摄像头 shuangshan-sample 的主码流中断 10.0 分钟后已恢复画面。"
    assert camera.check_main_stream(T0 + 601) is None


def _parked(camera: CameraPipeline, start_s: float, seconds: float, wall0: float) -> list:
    """A car parked in the sample's no-parking kerb, 5 frames a second; the violations confirmed on the way."""
    image = np.zeros((540, 960, 3), np.uint8)
    confirmed = []
    for index in range(int(seconds * 5)):
        pts = start_s + index / 5
        frame = Frame("shuangshan-sample", index, pts, wall0 + pts, image)
        confirmed += camera.step(frame, _car((100.0, 400.0, 260.0, 480.0)))
    return confirmed


def test_a_case_confirmed_but_not_on_the_spool_when_the_worker_dies_is_filed_by_the_next_run(tmp_path: Path) -> None:
    config = load_camera(SAMPLE_CAMERA)  # illegal_parking: 20 s of dwell
    keeper = EpisodeKeeper(FileEpisodeMemory(tmp_path), every_s=2)
    dying = CameraPipeline(config, "live:shuangshan-sample", wall_clock_ids=True)
    (violation,) = _parked(dying, 0.0, 22.0, T0)  # confirmed at 20 s; being rendered, or held for a full disk
    assert dying.unfiled_case_ids() == {violation.case_id}
    keeper.store(keeper.snapshot([dying]))  # the last save before the kill

    restarted = CameraPipeline(config, "live:shuangshan-sample", wall_clock_ids=True)
    keeper.restore(restarted)
    assert [v.case_id for v in _parked(restarted, 0.0, 6.0, T0 + 30)] == [violation.case_id]


def test_a_filed_case_is_not_filed_again_by_the_next_run(tmp_path: Path) -> None:
    config = load_camera(SAMPLE_CAMERA)
    keeper = EpisodeKeeper(FileEpisodeMemory(tmp_path), every_s=2)
    first = CameraPipeline(config, "live:shuangshan-sample", wall_clock_ids=True)
    (violation,) = _parked(first, 0.0, 25.0, T0)
    first.filed(violation.case_id)  # on the spool
    keeper.store(keeper.snapshot([first]))

    restarted = CameraPipeline(config, "live:shuangshan-sample", wall_clock_ids=True)
    keeper.restore(restarted)
    assert _parked(restarted, 0.0, 6.0, T0 + 30) == []


@pytest.mark.parametrize("saved", [
    {"no-parking-kerb/illegal_parking": [{"role": "vehicle"}]},  # an episode without its fields
    {"no-parking-kerb/illegal_parking": {"role": "vehicle"}},
    ["not", "a", "mapping"],
    {"no-parking-kerb/illegal_parking": [{"role": "vehicle", "ordinal": 0, "first_seen_wall": "soon",
                                          "last_seen_wall": 1.0, "first_bbox": [0, 0, 1, 1], "last_bbox": [0, 0, 1, 1],
                                          "score_sum": 1.0, "observations": 1, "confirmed": False}]},
])
def test_a_damaged_episode_snapshot_costs_the_episodes_not_the_worker(tmp_path: Path, saved, caplog) -> None:
    (tmp_path / "shuangshan-sample.json").write_text(json.dumps(saved), encoding="utf-8")
    camera = CameraPipeline(load_camera(SAMPLE_CAMERA), "live:shuangshan-sample", wall_clock_ids=True)
    with caplog.at_level(logging.WARNING):
        EpisodeKeeper(FileEpisodeMemory(tmp_path)).restore(camera)
    assert "unreadable" in caplog.text
    assert _parked(camera, 0.0, 25.0, T0) != []  # the camera goes on and files its case


def test_a_full_spool_disk_holds_the_case_in_memory_and_commits_it_when_room_returns(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    full = threading.Event()
    full.set()
    write = spool_module.write_synced

    def write_unless_full(path: Path, data: bytes) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, data)

    monkeypatch.setattr(spool_module, "write_synced", write_unless_full)
    filer = CaseFiler(CaseSpool(tmp_path / "spool"), LocalEvidenceStore(tmp_path / "evidence"),
                      SqliteCaseQueue(tmp_path / "cases.sqlite3"), retry_min_s=0.01, retry_max_s=0.05).start()
    cases = CaseMaker(EvidenceRenderer(load_event_codes(), "0.1.0"), filer, MODEL)
    camera = CameraPipeline(load_camera(SAMPLE_CAMERA), "live:shuangshan-sample", wall_clock_ids=True)
    (violation,) = _parked(camera, 0.0, 25.0, T0)
    note = CaseNote(f"{violation.case_id}:n", violation.case_id, "2023-11-15T06:13:50.000+08:00", "system",
                    "camera_recovered", "back")
    try:
        cases.file(camera, violation)  # what a patrol's evidence writer calls: no error, nothing dropped
        filer.add_note(note)
        cases.complete(camera, violation.case_id)  # its post-roll seen while the disk is still full
        assert filer.held == 2 and filer.disk_full
        assert camera.unfiled_case_ids() == {violation.case_id}  # a kill now: the next run files it
        line = spool_line(Patrol([], None, cases, loop_files=False).report())
        assert f"2 case(s) held in memory: disk full at {tmp_path / 'spool'}" in line
        time.sleep(0.3)  # retried meanwhile, in vain
        assert filer.held == 2 and filer.spool.entries() == []

        full.clear()
        assert filer.wait_delivered(timeout_s=30)
        assert filer.held == 0 and filer.spool_error is None and not filer.disk_full
        assert camera.unfiled_case_ids() == frozenset()
        assert filer.queue.get(violation.case_id) is not None
        assert filer.queue.notes(violation.case_id) == [note]  # the note kept its place behind its case
    finally:
        filer.close(drain_timeout_s=5)


def test_the_replay_summary_counts_cases_set_aside_and_cases_not_written() -> None:
    summary = ReplaySummary(100, 50, 2.0, 3, spool="/out/spool", rejected=1)
    assert summary.line().endswith("; 1 undeliverable case(s) set aside in /out/spool/rejected")
    assert summary.failure() is None
    full = ReplaySummary(100, 50, 2.0, 0, spool="/out/spool", unwritten=2, spool_error="disk full at /out/spool")
    assert full.failure() == "disk full at /out/spool: 2 case(s) not written"
