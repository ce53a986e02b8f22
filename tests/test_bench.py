"""`patrol bench`: each benchmark runs end to end on a tiny street and writes what it promises.

Behaviour only (fields, ratios from the medians and the CPU bound, recall kept by gating), never timing
thresholds: the machine running the tests is not the one whose figures are published.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

import av
import cv2
import numpy as np
import pytest
from support import DEFAULT_MODEL, PATROL, REPO, RememberingDetector, heavy_fixture, remembered_detections, short_street

from pipeline.detect import load_card

sys.path.insert(0, str(REPO))  # benchmarks/ lives in the checkout, not in the package

from benchmarks import cameras, compare, endurance, gating, gpu, stages
from benchmarks.common import STREET_CAMERA, Budget, Settings, Video, open_video, quiet_street, rotated, sub_main
from benchmarks.compare import find_ultralytics_python
from benchmarks.plot import bar_chart, line_chart
from benchmarks.run import summary
from pipeline.detect import Detector
from pipeline.detect.detector import usable_cores
from pipeline.synth import render_video, sample_scenario

TINY = Budget(rounds=2, compare_s=1.0, bare_inputs=4, street_s=6.0, warm_up_s=0.5, window_s=1.0, bisections=1,
              max_cameras=2, batching_cameras=2, largest_batch=2, memory_s=1.0)
FAKE_ULTRALYTICS = {"frames_analysed": 20, "seconds": 2.0, "analysed_fps": 10.0, "input_shape": [1, 3, 192, 320],
                    "ms_per_frame": {"preprocess": 1.0, "inference": 50.0, "postprocess": 2.0}}


@pytest.fixture(scope="module")
def tiny_street(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "tiny-street.mp4"
    render_video(sample_scenario(seed=3, width=384, height=216, duration_s=TINY.street_s), path, seed=3,
                 progress=False)
    return open_video("tiny", "tiny synthetic street", path, STREET_CAMERA)


@pytest.fixture(scope="module")
def fake_ultralytics(tmp_path_factory) -> str:
    """Stands in for a Python with ultralytics: prints what benchmarks/ultralytics_side.py prints."""
    script = tmp_path_factory.mktemp("fake") / "python"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(FAKE_ULTRALYTICS)}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, fake_ultralytics) -> Settings:
    root = tmp_path_factory.mktemp("bench")
    return Settings(quick=True, out=root / "results", work=root / "work", budget=TINY,
                    ultralytics_python=fake_ultralytics)


def busy_street(settings: Settings) -> Video:
    """The shipped sample's first 84 s: traffic all along, three cases."""
    return open_video("sample", "sample street (synthetic 960x540, shipped), its first 84 s",
                      short_street(settings.work / "inputs"), STREET_CAMERA)


# Each benchmark on the tiny street; gating on streets with ground truth: a quiet one (50 s, two
# cases; as small as the tiny street, since the network sees 320 px either way) and the shipped
# sample's first 84 s (busy, three cases). Stages (memory per camera), cameras and batching (in
# gating) run the live patrol, which plays its videos at real speed.
BENCHMARKS = {
    "compare": lambda settings, tiny: compare.run(settings, [tiny]),
    "stages": lambda settings, tiny: stages.run(settings, [tiny]),
    "cameras": lambda settings, tiny: cameras.run(settings, [tiny], rates=(5.0,)),
    "gating": lambda settings, tiny: gating.run(settings, [quiet_street(settings, 384, 216, 50.0),
                                                           busy_street(settings)], tiny),
    "gpu": lambda settings, tiny: gpu.run(settings, tiny),
}


@heavy_fixture(scope="module")
def results(settings, tiny_street, tmp_path_factory) -> Callable[[str], dict]:
    """``results(name)``: the benchmark's result, run once, when a test first asks for it. Gating's
    detector remembers boxes (``support.RememberingDetector``): its replays with gating off and on
    see the same frames, and the busy street is the start of the sample the session replays. The
    tests read its episodes and counts, never its speed."""
    done: dict[str, dict] = {}
    folder = remembered_detections(tmp_path_factory)

    def remembering(*args, **kwargs) -> RememberingDetector:
        return RememberingDetector(Detector(*args, **kwargs), folder)

    def result(name: str) -> dict:
        if name not in done:
            with pytest.MonkeyPatch.context() as patch:
                if name == "gating":
                    patch.setattr(gating, "Detector", remembering)
                done[name] = BENCHMARKS[name](settings, tiny_street)
        return done[name]

    return result


def written(settings: Settings, name: str) -> dict:
    document = json.loads((settings.out / f"{name}.json").read_text())
    assert document["benchmark"] == name
    assert {"cpu", "cores", "memory_gib", "load_average", "onnxruntime"} <= set(document["machine"])
    assert document["settings"]["budget"]["rounds"] == TINY.rounds
    image = cv2.imread(str(settings.out / f"{name}.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    return document


def median(values: list[float]) -> float:
    return float(np.median(values))


def test_compare_reports_the_ratios_of_the_medians(results, settings) -> None:
    results("compare")
    document = written(settings, "compare")
    (run,) = document["videos"]
    side = load_card(DEFAULT_MODEL).input.width
    assert run["input_size"] == [side, side * 9 // 16]  # the 16:9 street at the model's long side, rectangular
    assert set(run["median_fps"]) == {"replay", "ultralytics", "bare_ort", "bare_ort_defaults"}
    for name, runs in run["runs"].items():
        assert len(runs) == TINY.rounds
        assert run["median_fps"][name] == pytest.approx(median([r["analysed_fps"] for r in runs]))
    fps = run["median_fps"]
    assert run["vs_ultralytics"] == pytest.approx(fps["replay"] / fps["ultralytics"])
    assert run["vs_bare_ort"] == pytest.approx(fps["replay"] / fps["bare_ort"])
    # the bound: the cores over the core-ms of every stage of the same video; bare ORT a reference, not a target
    bound = run["cpu_bound"]
    assert set(bound["core_ms_per_frame"]) == set(stages.STAGES)  # the tiny street's camera does not gate
    assert bound["core_ms_per_frame"]["inference"] > 0 and bound["core_ms_per_frame"]["decode"] > 0
    assert bound["cores"] == usable_cores()
    assert bound["bound_fps"] == pytest.approx(bound["cores"] * 1000 / sum(bound["core_ms_per_frame"].values()))
    assert bound["fraction"] == pytest.approx(fps["replay"] / bound["bound_fps"])
    assert bound["target"] == 0.9 and bound["met"] == (bound["fraction"] >= 0.9)
    assert document["targets"] == {"of_cpu_bound": 0.9, "vs_ultralytics": 1.5}
    assert run["targets_met"] == {"of_cpu_bound": bound["met"], "vs_ultralytics": run["vs_ultralytics"] >= 1.5}
    assert document["targets_met"] == (bound["met"] and run["vs_ultralytics"] >= 1.5)
    replayed = run["runs"]["replay"][0]
    assert replayed["frames_analysed"] == 30 and replayed["peak_rss_mb"] > 50  # 6 s at 5 fps, in its own process
    assert run["runs"]["bare_ort"][0]["frames_analysed"] == 30  # as many network runs as the replay analysed
    assert run["runs"]["ultralytics"][0]["vid_stride"] == 3  # 15 fps video, 5 analysis fps


@pytest.mark.heavy
def test_without_ultralytics_the_comparison_says_why(settings, tiny_street) -> None:
    alone = Settings(quick=True, out=settings.out / "alone", work=settings.work, budget=TINY)
    result = compare.compare_on(tiny_street, Detector(alone.model), alone, rounds=1)
    assert "ultralytics" not in result["median_fps"] and result["vs_ultralytics"] is None
    assert result["targets_met"]["vs_ultralytics"] is None and "cpu_bound" in result
    assert "--ultralytics-python" in result["ultralytics_skipped"]


@pytest.mark.heavy
def test_the_ultralytics_side_feeds_the_network_what_the_patrol_feeds_it(settings, tiny_street) -> None:
    python = find_ultralytics_python(None)
    if python is None:
        pytest.skip("no Python with ultralytics here (the train extra); the fake stands in above")
    real = Settings(quick=True, out=settings.out, work=settings.work, budget=TINY, ultralytics_python=python)
    side = compare.ultralytics_in_child(tiny_street, Detector(real.model), real)
    assert side["input_shape"] == [1, 3, 192, 320]
    assert side["frames_analysed"] == 30


@pytest.mark.heavy
def test_on_a_gating_camera_the_network_skips_gated_frames_and_the_bound_counts_the_gate(settings, tiny_street) -> None:
    gating = tiny_street.camera.motion_gating.model_copy(update={"enabled": True})
    gated = replace(tiny_street, camera=tiny_street.camera.model_copy(update={"motion_gating": gating}))
    timing = stages.time_stages(gated, Detector(settings.model), settings)
    assert timing["motion_gating"] and 0 < timing["frames_gated"] < timing["frames_analysed"]
    bound = compare.cpu_bound(timing, analysed_fps=10.0, cores=2)
    assert bound["core_ms_per_frame"] == {**timing["ms_per_frame"], "motion_gate": timing["motion_gate_ms_per_frame"]}
    assert bound["bound_fps"] == pytest.approx(2000 / sum(bound["core_ms_per_frame"].values()))
    assert bound["fraction"] == pytest.approx(10.0 / bound["bound_fps"])


@pytest.mark.realtime
def test_stages_cover_every_stage_and_memory_per_camera(results, settings) -> None:
    results("stages")
    document = written(settings, "stages")
    (run,) = document["videos"]
    assert set(run["ms_per_frame"]) == set(stages.STAGES)
    assert all(ms >= 0 for ms in run["ms_per_frame"].values())
    assert run["ms_per_frame"]["inference"] > 0 and run["ms_per_frame"]["decode"] > 0
    assert run["total_ms_per_frame"] == pytest.approx(sum(run["ms_per_frame"].values()))
    assert run["frames_analysed"] == 30 and run["frames_decoded"] == 90
    (memory,) = document["memory"]  # the one video given
    assert set(memory["rss_mb"]) == {"1", "4"}
    assert memory["per_camera_mb"] == pytest.approx((memory["rss_mb"]["4"] - memory["rss_mb"]["1"]) / 3)


@pytest.mark.realtime
def test_cameras_per_box_is_the_largest_step_that_kept_up(results, settings) -> None:
    results("cameras")
    document = written(settings, "cameras")
    (sweep,) = [sweep for sweep in document["sweeps"] if sweep["layout"] == "216p"]  # the tiny street analysed
    steps = {step["cameras"]: step for step in sweep["steps"]}
    assert 1 in steps and max(steps) <= TINY.max_cameras
    for step in steps.values():
        assert step["keeps_up"] == (step["min_analysed_fps"] >= 0.9 * 5.0 and step["max_lag_s"] is not None
                                    and step["max_lag_s"] < 1.0)
    kept_up = [n for n, step in steps.items() if step["keeps_up"]]
    assert sweep["cameras_per_box"] == (max(kept_up) if kept_up else 0)


@pytest.mark.realtime
def test_the_sub_main_layout_keeps_each_camera_to_the_rate_it_asks_for(results, settings, tiny_street) -> None:
    results("cameras")  # the one-stream layout's sweep, which this run keeps in cameras.json
    one = replace(settings, budget=replace(TINY, max_cameras=1))
    camera = sub_main(one, replace(tiny_street, street="static"), 192, 108)  # 384x216 recorded, 192x108 analysed
    assert camera.camera.adaptive_rate.enabled and camera.camera.motion_gating.enabled
    cameras.run(one, [camera], rates=(5.0,))
    document = json.loads((settings.out / "cameras.json").read_text())
    (sweep,) = [sweep for sweep in document["sweeps"] if sweep["layout"] == "sub+main"]
    assert sweep["video"]["size"] == [192, 108] and sweep["video"]["main"]["size"] == [384, 216]
    (step,) = sweep["steps"]
    assert 0 < step["min_asked_fps"] <= 5.0 and step["network_runs_per_s"] <= step["total_analysed_fps"]
    assert step["keeps_up"] == (step["min_rate_share"] >= 0.9 and step["max_lag_s"] is not None
                                and step["max_lag_s"] < 1.0)
    assert {"layout": "sub+main", "fps": 5, "largest_n": sweep["cameras_per_box"], "street": "static",
            "model": "patrol-street-int8", "cpu": document["machine"]["cpu"]} in document["entries"]
    assert any(sweep["layout"] == "216p" for sweep in document["sweeps"])
    # a second camera would play the street from its keyframe 2 s in: the same pictures, from there
    pictures = [[frame.to_ndarray(format="gray") for frame in av.open(str(path)).decode(video=0)]
                for path in (camera.path, rotated(one, camera.path, 2.0))]
    assert len(pictures[0]) == len(pictures[1]) and np.array_equal(pictures[1][0], pictures[0][30])


@pytest.mark.realtime
def test_the_endurance_run_samples_memory_rings_and_keeping_up_and_writes_its_chart(settings, tiny_street) -> None:
    camera = sub_main(settings, replace(tiny_street, street="static"), 192, 108)
    result = endurance.run(settings, camera, cameras=2, analysis_fps=5.0, minutes=3 / 60, every_s=1.0, warm_up_s=1.0)
    rows = result["rows"]
    assert len(rows) >= 2 and [row["at_s"] for row in rows] == sorted(row["at_s"] for row in rows)
    assert all(row["ring_mb"] > 0 and row["rss_mb"] > 0 and row["open_fds"] > 0 for row in rows)
    assert result["per_camera_mb"] == pytest.approx((result["warm_rss_mb"] - result["model_loaded_rss_mb"]) / 2)
    assert result["kept_up"] == all(row["min_rate_share"] >= 0.9 and (row["max_lag_s"] or 0) < 1.0 for row in rows)
    assert result["street"] == "static" and result["cameras"] == 2
    written = json.loads((settings.out / "endurance.json").read_text())
    assert written["benchmark"] == "endurance" and written["rows"] == rows
    assert cv2.imread(str(settings.out / "endurance.png")) is not None


@pytest.mark.realtime
def test_gating_spares_the_network_on_a_quiet_street_and_keeps_every_case(results, settings) -> None:
    results("gating")
    quiet, sample = written(settings, "gating")["gating"]
    assert quiet["episodes_expected"] == 2  # the first parked car and the stall; the bin overflows after 50 s
    assert quiet["off"]["episodes_found"] == quiet["on"]["episodes_found"] == 2, (quiet["off"], quiet["on"])
    assert quiet["recall_equal"] and quiet["recall_on"] == quiet["recall_off"] == 1.0
    assert quiet["off"]["frames_gated"] == 0 and quiet["on"]["frames_gated"] > 0
    assert quiet["inferences_saved"] == pytest.approx(quiet["on"]["frames_gated"] / quiet["on"]["frames_analysed"])
    # the busy sample: traffic moves all along, so gating saves little, and must lose nothing
    assert sample["episodes_expected"] == 3  # the first parked car, the stall, the bin
    assert sample["off"]["episodes_found"] == sample["on"]["episodes_found"] == 3 and sample["recall_equal"]


@pytest.mark.realtime
def test_batching_compares_medians_and_times_the_detector_per_batch_size(results, settings) -> None:
    results("gating")
    batching = written(settings, "gating")["batching"]
    assert set(batching["runs"]) == {"batched", "one_by_one"}
    totals = batching["median_total_fps"]
    for mode, steps in batching["runs"].items():
        assert len(steps) == TINY.rounds
        assert totals[mode] == pytest.approx(median([s["total_analysed_fps"] for s in steps]))
    assert batching["batched_vs_one_by_one"] == pytest.approx(totals["batched"] / totals["one_by_one"])
    assert set(batching["detector_ms_per_frame"]) == {"1", "2"}


def test_the_gpu_script_runs_here_and_says_what_it_could_not_measure(results, settings) -> None:
    results("gpu")
    document = written(settings, "gpu")
    runs = {run["name"]: run for run in document["inference"]}
    decoders = {run["name"]: run for run in document["decode"]}
    assert decoders["software"]["available"] and decoders["software"]["frames_per_s"] > 0
    if not document["gpu_measured"]:  # this machine: no CUDA provider
        assert set(runs) == {"cuda", "cpu"} and runs["cpu"]["available"]
        assert not runs["cuda"]["available"] and "onnxruntime-gpu" in runs["cuda"]["reason"]
        assert set(runs["cpu"]["fps_by_batch"]) == {"1", "2"}
        assert runs["cpu"]["streams_per_device"] is None  # on a CPU the cameras benchmark is the figure
        assert not decoders["nvdec (cuda)"]["available"] and decoders["nvdec (cuda)"]["reason"]
    for run in runs.values():
        assert run["available"] or run["reason"]


@pytest.mark.realtime
def test_the_summary_table_has_every_figure(results, settings) -> None:
    table = summary({name: results(name) for name in BENCHMARKS}, settings, 60.0)
    for figure in ("CPU bound", "patrol replay", "replay / CPU bound", "ultralytics", "bare ORT",
                   "replay / ultralytics", "replay / bare ORT", "CPU bound of tiny", "Targets, on every video",
                   "| tiny |", "Memory per camera", "Cameras per box", "Motion gating", "Batching", "GPU run"):
        assert figure in table, figure
    assert all(stage in table for stage in stages.STAGES)


@pytest.mark.parametrize("use_matplotlib", [True, False])
def test_charts_are_pngs_with_or_without_matplotlib(tmp_path, use_matplotlib: bool) -> None:
    bars = bar_chart(tmp_path / "bars.png", "t", ["a", "b"], [1.0, 2.5], "fps", use_matplotlib=use_matplotlib)
    lines = line_chart(tmp_path / "lines.png", "t", {"s": ([1, 2, 4], [0.1, 0.4, 1.3])}, "cameras", "lag",
                       limit=1.0, use_matplotlib=use_matplotlib)
    for path in (bars, lines):
        assert cv2.imread(str(path)) is not None


def test_patrol_bench_refuses_a_missing_model_naming_the_option(tmp_path) -> None:
    run = subprocess.run([*PATROL, "bench", "gpu", "--model",
                          str(tmp_path / "none.onnx"), "--out", str(tmp_path)],
                         check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 2 and "--model" in run.stderr and "none.onnx" in run.stderr


def test_a_python_without_ultralytics_tracker_is_refused_with_what_to_install(tmp_path) -> None:
    # ultralytics itself imports, its tracker's lap does not: the comparison would die mid-run
    (tmp_path / "ultralytics.py").write_text("")
    (tmp_path / "lap.py").write_text("raise ImportError('No module named lap')")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} \"$@\"\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ValueError, match=r"--ultralytics-python .*lap.*\[train\]"):
        find_ultralytics_python(str(python))
