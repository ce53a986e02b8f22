"""Shadow runs (`patrol shadow`, ``pipeline.engine.shadow``): a candidate model analyses the frames
the live one does; only the live model's cases are filed, and the two models' cases are compared."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from contextlib import redirect_stdout
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import av
import pytest
from queue_contract import make_record
from sub_main_support import sub_main_pair
from support import DEFAULT_MODEL, SAMPLE_VIDEO, START, Replay, camera_file, cut_video, heavy_fixture, replay_sample

from pipeline.cli import main as cli
from pipeline.cli.main import main
from pipeline.config import Workspace, load_camera
from pipeline.delivery import CaseSpool
from pipeline.engine import Patrol, embedded_cases
from pipeline.engine.shadow import LiveShadow, ShadowCase, ShadowLog, compare_live, pair_cases, shadow
from pipeline.ingest.clip import PacketRing, StreamParams
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


@heavy_fixture(scope="module")
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


@pytest.mark.heavy
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


# ---- beside a live patrol (`patrol run --shadow-model`) ----

# The sample from 8 s to 15 s, played at its own pace as a camera that ends: the first parked car
# (confirmed ~3.4 s in with every dwell at 2 s) is its one case.
LIVE_CUT = (8.0, 15.0)


@pytest.fixture(scope="module")
def live_street(tmp_path_factory) -> Path:
    """The camera file of the short cut."""
    folder = tmp_path_factory.mktemp("shadow-live-street")
    clip = cut_video(SAMPLE_VIDEO, folder / "cut.mp4", start_s=LIVE_CUT[0], seconds=LIVE_CUT[1])
    return camera_file(folder / "camera.yaml", dwell_s=DWELL_S, url=str(clip))


def compared(var: Path, candidate: str) -> dict:
    """`patrol shadow-compare` of ``var``: the JSON it wrote."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(["shadow-compare", "--var", str(var), "--candidate", candidate]) == 0
    assert "all cameras" in printed.getvalue()
    return json.loads((var / "shadow" / f"{candidate}.compare.json").read_text(encoding="utf-8"))


def live_ids(var: Path) -> set[str]:
    with sqlite3.connect(Workspace(var).queue_db) as db:
        return {row[0] for row in db.execute("select case_id from cases")}


@heavy_fixture(scope="module")
def patrol_beside_itself(live_street, tmp_path_factory) -> tuple[Path, str, list[dict]]:
    """`patrol run --shadow-model` with the live model as its own candidate: its --var, what it
    printed, its shadow log's lines."""
    var = tmp_path_factory.mktemp("shadow-live") / "var"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(printed):
        patch.setattr(cli, "_stop_on_signals", lambda patrol: None)  # pytest keeps its own Ctrl-C
        code = main(["run", str(live_street), "--var", str(var), "--shadow-model", str(DEFAULT_MODEL),
                     "--metrics", "off", "--health-every", "60", "--duration", "60"])
    assert code == 0, printed.getvalue()
    name = re.search(r"^shadow: candidate (\S+) ", printed.getvalue(), re.MULTILINE).group(1)
    log = var / "shadow" / f"{name}.jsonl"
    assert str(log) in printed.getvalue()
    return var, name, [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_a_candidate_beside_the_patrol_only_logs_the_cases_the_live_model_files(patrol_beside_itself):
    var, _, lines = patrol_beside_itself
    filed = live_ids(var)
    would_file = [line for line in lines if "case_id" in line]
    assert filed and len(would_file) == len(filed)
    assert not {line["case_id"] for line in would_file} & filed  # the candidate's case namespace is its own
    assert {path.name for path in Workspace(var).evidence.glob("*/*/*") if path.is_dir()} == filed
    assert CaseSpool(Workspace(var).spool).entries() == []
    [start, *_, end] = lines
    assert start["candidate_model"]["name"] == start["live_model"]["name"] and "watching_since" in start
    assert end["frames_analysed"] > 0 and end["watched_until"] > start["watching_since"]


def test_shadow_compare_pairs_every_live_case_with_the_candidates_own(patrol_beside_itself):
    var, name, _ = patrol_beside_itself
    report = compared(var, name)
    filed = live_ids(var)
    assert list(report["cameras"]) == ["shuangshan-sample"]
    for counts in (report["cameras"]["shuangshan-sample"]["counts"], report["total"]["counts"]):
        assert counts == {"both": len(filed), "live_only": 0, "candidate_only": 0}
    assert {pair["live"]["case_id"] for pair in report["total"]["both"]} == filed
    assert all(pair["delta_s"] == 0 for pair in report["total"]["both"])
    assert report["total"]["frames_analysed"] > 0


@pytest.mark.heavy
@pytest.mark.realtime  # a live patrol of the 7 s cut at its own pace
def test_beside_a_patrol_of_a_sub_main_camera_the_candidates_boxes_are_compared_in_the_main_streams_pixels(
        tmp_path):
    """The live case is filed in the main stream's 960x540 pixels; the candidate, on the 640x360
    sub-stream, logs its box scaled to them as well, and the comparison pairs the two."""
    main_file, sub = sub_main_pair(tmp_path / "pair", start_s=LIVE_CUT[0], seconds=LIVE_CUT[1] - LIVE_CUT[0])
    camera = camera_file(tmp_path / "camera.yaml", dwell_s=DWELL_S, url=str(main_file), detect_url=str(sub))
    var = tmp_path / "var"
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()) as printed:
        patch.setattr(cli, "_stop_on_signals", lambda patrol: None)
        assert main(["run", str(camera), "--var", str(var), "--shadow-model", str(DEFAULT_MODEL),
                     "--metrics", "off", "--health-every", "60", "--duration", "60"]) == 0, printed.getvalue()
    name = re.search(r"^shadow: candidate (\S+) ", printed.getvalue(), re.MULTILINE).group(1)
    logged = [json.loads(line) for line in (var / "shadow" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    (noted,) = [line for line in logged if "case_id" in line]
    assert noted["main_bbox"] == pytest.approx([round(v * 1.5, 1) for v in noted["bbox"]], abs=0.2)
    written = compared(var, name)
    assert written["total"]["counts"] == {"both": 1, "live_only": 0, "candidate_only": 0}


@pytest.mark.heavy
def test_a_blind_candidate_beside_the_patrol_leaves_every_live_case_live_only(live_street, detector, tmp_path):
    var = tmp_path / "var"
    cases = embedded_cases(Workspace(var), detector.model_record())
    try:
        shadow_log = LiveShadow.log_path_in(var, Blind.name)
        patrol = Patrol([load_camera(live_street)], detector, cases, loop_files=False, print_line=lambda _: None,
                        shadow=LiveShadow(Blind(), detector.model_record(), shadow_log))
        patrol.run(duration_s=30)
    finally:
        cases.filer.close(drain_timeout_s=30)
    filed = live_ids(var)
    assert filed
    report = compared(var, Blind.name)
    assert report["total"]["counts"] == {"both": 0, "live_only": len(filed), "candidate_only": 0}
    assert {case["case_id"] for case in report["total"]["live_only"]} == filed
    assert report["total"]["candidate_model"]["name"] == "blind"


def test_a_missing_shadow_model_is_refused_before_the_patrol_starts(live_street, tmp_path, capsys):
    missing = tmp_path / "no-such-model.onnx"
    code = main(["run", str(live_street), "--var", str(tmp_path / "var"), "--shadow-model", str(missing),
                 "--metrics", "off"])
    assert code == 2
    assert capsys.readouterr().err == f"patrol run: --shadow-model {missing}: no such file\n"
    assert not (tmp_path / "var").exists()


class NoLiveCases:
    """A queue without cases, noting the spans it is asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float]] = []

    def confirmed_between(self, camera_id: str, since: float, until: float) -> list:
        self.asked.append((camera_id, since, until))
        return []


def test_a_comparison_takes_the_spans_the_candidate_watched_within_the_window(tmp_path):
    """A patrol that died logged no end: its watch lasts until the camera's next one."""
    def wall(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")

    models = {"live_model": {"name": "live"}, "candidate_model": {"name": "new"}}
    lines = [{"camera_id": "cam", "watching_since": wall(100), **models},
             {"camera_id": "cam", "case_id": "S-1", "kind": "illegal_parking", "zone_id": "kerb", "confirmed_s": 5.0,
              "bbox": [0, 0, 10, 10], "score": 0.9, "confirmed_wall": wall(120)},
             {"camera_id": "cam", "watched_until": wall(200), "frames_analysed": 500},
             {"camera_id": "cam", "watching_since": wall(300), **models},
             {"camera_id": "cam", "watching_since": wall(400), **models}]
    log_path = tmp_path / "new.jsonl"
    log_path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    queue = NoLiveCases()
    report = compare_live("new", ShadowLog.read(log_path), queue, since=150.0, until=450.0, now=1000.0)
    assert queue.asked == [("cam", 150.0, 200.0), ("cam", 300.0, 400.0), ("cam", 400.0, 450.0)]
    assert report.cameras["cam"].frames_analysed == 500 and report.cameras["cam"].seconds == 100.0
    assert report.total.candidate_only == []  # confirmed before --since


class LiveCases(NoLiveCases):
    """A queue holding ``records``, whatever span it is asked for."""

    def __init__(self, records: list) -> None:
        super().__init__()
        self.records = records

    def confirmed_between(self, camera_id: str, since: float, until: float) -> list:
        super().confirmed_between(camera_id, since, until)
        return self.records


@pytest.mark.parametrize("stream", ["main", "sub"])
def test_a_sub_main_cameras_live_case_pairs_with_the_candidates_box_in_the_pixels_it_was_filed_in(tmp_path, stream):
    """A camera analysed on its 640x360 sub-stream files its case in the main stream's 960x540 pixels
    (or, the main stream down, the sub-stream's): the candidate, on the sub-stream, logs its box
    both ways, and the comparison takes the one the live case was filed in."""
    def wall(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")

    sub_box, main_box = (40.0, 220.0, 160.0, 300.0), (60.0, 330.0, 240.0, 450.0)  # one car, x1.5: no overlap
    models = {"live_model": {"name": "live"}, "candidate_model": {"name": "new"}}
    lines = [{"camera_id": "cam-07", "watching_since": wall(100), **models},
             {"camera_id": "cam-07", "case_id": "S-1", "kind": "illegal_parking", "zone_id": "no-parking-1",
              "confirmed_s": 20.0, "bbox": sub_box, "score": 0.9, "main_bbox": main_box, "confirmed_wall": wall(120)},
             {"camera_id": "cam-07", "watched_until": wall(200), "frames_analysed": 500}]
    log_path = tmp_path / "new.jsonl"
    log_path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    filed = replace(make_record(1), bbox=main_box if stream == "main" else sub_box, confirmed_wall=wall(120.5),
                    evidence_stream=stream)
    report = compare_live("new", ShadowLog.read(log_path), LiveCases([filed]), now=1000.0)
    assert [(pair.live.case_id, pair.candidate.case_id) for pair in report.total.both] == [(filed.case_id, "S-1")]
    assert report.total.live_only == report.total.candidate_only == []


def test_a_stream_declares_its_pictures_size_and_a_ring_gives_its_newest_packets() -> None:
    with av.open(str(SAMPLE_VIDEO)) as container:
        stream = container.streams.video[0]
        keyframe = next(packet for packet in container.demux(stream) if packet.is_keyframe)
        params = StreamParams.from_stream(stream, keyframe)
    assert params.size == (960, 540)
    ring = PacketRing()
    assert ring.picture_size is None
    ring.add(bytes(keyframe), pts_s=0.0, dts_s=0.0, keyframe=True, params=params)
    assert ring.picture_size == (960, 540)
