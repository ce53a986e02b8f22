"""Shadow runs (`patrol shadow`, ``pipeline.engine.shadow``): a candidate model analyses the frames
the live one does; only the live model's cases are filed, and the two models' cases are compared."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from support import DEFAULT_MODEL, SAMPLE_VIDEO, START, Replay, camera_file, cut_video, replay_sample

from pipeline.cli.main import main
from pipeline.config import Workspace, load_camera
from pipeline.delivery import CaseSpool
from pipeline.engine import embedded_cases
from pipeline.engine.shadow import ShadowCase, pair_cases, shadow
from pipeline.rules.same_event import TOLERANCE_S
from pipeline.types import Detections

# With every dwell at 2 s the sample's first 22 s hold two cases: the first parked car (confirmed
# at ~11.4 s) and the stall (~20.6 s, filed when the clip ends, before its post-roll).
CLIP_S = 22.0
DWELL_S = 2.0


class Blind:
    """A candidate that sees nothing on any frame."""

    parallel_runs = 8  # never the limit: the live detector's runs decide how many go at once
    name = "blind"
    providers = ["none"]

    def model_record(self) -> dict:
        return {"name": self.name, "sha256": "0" * 64}

    def detect(self, images):
        return [Detections.empty() for _ in images]


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> tuple[Path, Path]:
    """The short clip and its camera file (every dwell 2 s)."""
    folder = tmp_path_factory.mktemp("shadow-street")
    return (cut_video(SAMPLE_VIDEO, folder / "clip.mp4", seconds=CLIP_S),
            camera_file(folder / "camera.yaml", dwell_s=DWELL_S))


@pytest.fixture(scope="module")
def same_model_run(street, tmp_path_factory) -> tuple[Path, str, dict]:
    """`patrol shadow` with the live model as its own candidate: its --out, what it printed, its report."""
    video, camera = street
    out = tmp_path_factory.mktemp("shadow-same")
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["shadow", str(video), "--camera", str(camera), "--candidate", str(DEFAULT_MODEL),
                     "--out", str(out)])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue(), json.loads((out / "shadow.json").read_text(encoding="utf-8"))


def test_the_live_model_as_candidate_pairs_every_case_and_files_what_a_plain_replay_files(
        same_model_run, street, detector, tmp_path):
    out, printed, report = same_model_run
    live_ids = sorted(case["case_id"] for case in Replay.read(out).cases)
    plain = replay_sample(tmp_path, detector, camera=load_camera(street[1]), video=street[0])
    assert len(live_ids) >= 2
    assert live_ids == sorted(case["case_id"] for case in plain.cases)
    assert report["counts"] == {"both": len(live_ids), "live_only": 0, "candidate_only": 0}
    assert sorted(pair["live"]["case_id"] for pair in report["both"]) == live_ids
    assert all(pair["delta_s"] == 0 for pair in report["both"])
    assert report["frames_analysed"] > 0 and report["analysed_fps"] > 0
    for case_id in live_ids:
        assert f"[case] {case_id} " in printed
    assert "total" in printed and f"report: {out / 'shadow.json'}" in printed


def test_nothing_of_the_candidate_reaches_the_queue_the_evidence_or_the_spool(same_model_run):
    out, _, report = same_model_run
    workspace = Workspace(out)
    live_ids = {case["case_id"] for case in Replay.read(out).cases}
    candidate_ids = {pair["candidate"]["case_id"] for pair in report["both"]}
    assert candidate_ids and not candidate_ids & live_ids  # the candidate's case namespace is its own
    with sqlite3.connect(workspace.queue_db) as db:
        assert {row[0] for row in db.execute("select case_id from cases")} == live_ids
    assert {path.name for path in workspace.evidence.glob("*/*/*") if path.is_dir()} == live_ids
    assert CaseSpool(workspace.spool).entries() == []


def test_a_candidate_that_sees_nothing_leaves_every_live_case_live_only(street, detector, tmp_path):
    video, camera = street
    workspace = Workspace(tmp_path)
    cases = embedded_cases(workspace, detector.model_record())
    try:
        run = shadow(str(video), load_camera(camera), detector, Blind(), cases, cases_path=tmp_path / "cases.jsonl",
                     report_path=tmp_path / "shadow.json", evidence_root=workspace.evidence, start_wall=START)
    finally:
        cases.filer.close(drain_timeout_s=30)
    filed = Replay.read(tmp_path).cases
    assert filed
    assert run.report.both == [] and run.report.candidate_only == []
    assert sorted(case.case_id for case in run.report.live_only) == sorted(case["case_id"] for case in filed)
    written = json.loads((tmp_path / "shadow.json").read_text(encoding="utf-8"))
    assert written["counts"] == {"both": 0, "live_only": len(filed), "candidate_only": 0}
    assert written["candidate_model"]["name"] == "blind"
    assert written["frames_analysed"] == run.summary.frames_analysed > 0


def test_cases_pair_only_as_one_event_same_kind_zone_time_and_place():
    live = ShadowCase("P-live", "illegal_parking", "kerb", 30.0, (100.0, 400.0, 300.0, 460.0), 0.9)
    moved = ShadowCase("P-moved", "illegal_parking", "kerb", 30.5, (500.0, 400.0, 700.0, 460.0), 0.9)
    late = ShadowCase("P-late", "illegal_parking", "kerb", 30.0 + TOLERANCE_S + 0.5, live.bbox, 0.9)
    other_kind = ShadowCase("G-bin", "bin_overflow", "kerb", 30.0, live.bbox, 0.9)
    near = ShadowCase("P-near", "illegal_parking", "kerb", 31.0, (110.0, 400.0, 310.0, 460.0), 0.8)
    nearer = ShadowCase("P-nearer", "illegal_parking", "kerb", 29.5, (105.0, 400.0, 305.0, 460.0), 0.8)
    both, live_only, candidate_only = pair_cases([live], [moved, late, other_kind, near, nearer])
    assert [(pair.live.case_id, pair.candidate.case_id, pair.delta_s) for pair in both] == [
        ("P-live", "P-nearer", -0.5)]
    assert live_only == []
    assert {case.case_id for case in candidate_only} == {"P-moved", "P-late", "G-bin", "P-near"}
    assert pair_cases([live], [moved]) == ([], [live], [moved])


@pytest.mark.parametrize("broken", ["missing candidate", "candidate without a card", "unreadable video"])
def test_bad_input_is_refused_naming_the_file(broken, street, tmp_path, capsys):
    video, camera = street
    candidate = DEFAULT_MODEL
    if broken == "missing candidate":
        candidate = named = tmp_path / "no-such-model.onnx"
    elif broken == "candidate without a card":  # other weights than any card's: no card has its sha256
        candidate = named = tmp_path / "retrained.onnx"
        candidate.write_bytes(DEFAULT_MODEL.read_bytes()[:4096])
    else:
        video = named = tmp_path / "broken.mp4"
        video.write_bytes(b"not a video")
    out = tmp_path / "out"
    code = main(["shadow", str(video), "--camera", str(camera), "--candidate", str(candidate), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("patrol shadow: ") and str(named) in error
    if broken != "unreadable video":  # a refused candidate is refused before anything is filed
        assert not out.exists()
