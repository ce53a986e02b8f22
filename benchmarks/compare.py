"""1. The patrol against what people would use instead, and against what the cores allow: same ONNX
model, same video, same machine.

Three contestants, run in turn several times (the order rotating each round) so that a busy
moment of the machine does not land on one of them; medians are compared:

- ``replay``: `patrol replay` in its own process: decode, detect, track, rules, evidence.
- ``ultralytics``: ``YOLO(model.onnx).track(source=video, stream=True, tracker='bytetrack.yaml')``
  in its own process (a Python with ultralytics, the `train` extra), at the same input size and
  score threshold, with ``vid_stride`` = video fps / the camera's analysis fps, so both analyse the
  same frames (the benchmark cameras' analysis fps divide their videos' fps).
- ``bare_ort``: the bare ONNX Runtime session, set up as the patrol's (same providers, threads and
  options, as many runs at once as the patrol's detector makes), run on the same analysed frames
  already letterboxed into input tensors: decoding, preprocessing and everything after the
  network excluded. A reference, not a bound: the patrol decodes on the same cores.
  ``bare_ort_defaults``: a session with ONNX Runtime's default options, one run at a time, as a
  plain ``InferenceSession`` loop (and ultralytics) runs it.

The bound (``cpu_bound``): the usable cores divided by the core-ms per analysed frame of every
stage of the patrol (``stages.time_stages`` over the same video, on the process's CPU clock):
the analysed frames per second the cores would give doing nothing but the patrol's work, perfectly
packed. Targets, on every video: replay at 0.9 of the bound or more, and 1.5x ultralytics or more.

Every figure is analysed frames per second (frames that went through the network, or for the
bare session, network runs).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.common import (
    REPO,
    Settings,
    Video,
    analysed_frames,
    looped,
    median,
    real_video,
    run_child,
    street,
    write_result,
)
from benchmarks.plot import bar_chart
from benchmarks.stages import time_stages
from pipeline.detect import Detector, open_session, pick_providers
from pipeline.detect.detector import usable_cores

TARGET_VS_ULTRALYTICS = 1.5
TARGET_OF_CPU_BOUND = 0.9
SUMMARY = re.compile(r"(\d+) frames decoded, (\d+) analysed in [\d.]+s \(([\d.]+) analysed fps\)")


def run(settings: Settings, videos: list[Video] | None = None) -> dict:
    """Default videos: the real parking-lot video and the 1080p synthetic street."""
    rounds = settings.budget.rounds
    videos = [looped(settings, video, math.ceil(settings.budget.compare_s / video.duration_s))
              for video in videos or [real_video(), street(settings, 1920, 1080)]]
    detector = Detector(settings.model, conf_threshold=settings.conf, intra_op_threads=settings.threads)
    results = [compare_on(video, detector, settings, rounds) for video in videos]
    targets = {"of_cpu_bound": TARGET_OF_CPU_BOUND, "vs_ultralytics": TARGET_VS_ULTRALYTICS}
    # a target left unmeasured (no ultralytics) is not met
    met = all(video_met is True for r in results for video_met in r["targets_met"].values())
    result = {"rounds": rounds, "targets": targets, "targets_met": met,
              "ultralytics_python": settings.ultralytics_python, "videos": results}
    write_result(settings, "compare", result)
    labels = [f"{r['video']['key']}: {name}" for r in results for name in [*r["median_fps"], "cpu bound"]]
    values = [fps for r in results for fps in [*r["median_fps"].values(), r["cpu_bound"]["bound_fps"]]]
    bar_chart(settings.out / "compare.png", "Analysed frames/s: medians of alternating runs, and the CPU bound", labels,
              values, "analysed frames/s")
    return result


def compare_on(video: Video, detector: Detector, settings: Settings, rounds: int) -> dict:
    input_size = detector.input_size_for((video.width, video.height))
    stage_timing = time_stages(video, detector, settings)  # before any session here runs: the CPU clock counts it alone
    tensors, analysed = prepared_inputs(video, detector, limit=settings.budget.bare_inputs)
    ours = open_session(settings.model, None, settings.threads or 1)
    defaults = ort.InferenceSession(str(settings.model), providers=list(pick_providers()))
    contestants: dict[str, Callable[[], dict]] = {
        "replay": lambda: replay_in_child(video, settings),
        "bare_ort": lambda: bare_session(ours, tensors, analysed, detector.parallel_runs),
        "bare_ort_defaults": lambda: bare_session(defaults, tensors, analysed, 1),
    }
    skipped = None
    if detector.card.layout != "ultralytics":
        skipped = f"the model's layout is {detector.card.layout}; ultralytics runs only its own"
    elif settings.ultralytics_python is None:
        skipped = "no Python with ultralytics found (pass --ultralytics-python, or set ULTRALYTICS_PYTHON)"
    else:
        contestants["ultralytics"] = lambda: ultralytics_in_child(video, detector, settings)
    names = list(contestants)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names[round_index % len(names):] + names[: round_index % len(names)]:
            runs[name].append(contestants[name]())
            print(f"bench compare {video.key}: round {round_index + 1}/{rounds} {name} "
                  f"{runs[name][-1]['analysed_fps']:.1f} analysed fps", flush=True)
    medians = {name: median([r["analysed_fps"] for r in runs[name]]) for name in names}
    result = {
        "video": video.describe(), "input_size": list(input_size), "threads": settings.threads or 1,
        "parallel_runs": detector.parallel_runs, "providers": detector.providers, "median_fps": medians, "runs": runs,
        "vs_ultralytics": ratio(medians["replay"], medians.get("ultralytics")),
        "vs_bare_ort": ratio(medians["replay"], medians["bare_ort"]),
        "cpu_bound": cpu_bound(stage_timing, medians["replay"], usable_cores()),
        "ultralytics_skipped": skipped,
    }
    vs_ultralytics = result["vs_ultralytics"]
    result["targets_met"] = {
        "of_cpu_bound": result["cpu_bound"]["met"],
        "vs_ultralytics": None if vs_ultralytics is None else vs_ultralytics >= TARGET_VS_ULTRALYTICS,
    }
    return result


def cpu_bound(stage_timing: dict, analysed_fps: float, cores: int) -> dict:
    """The analysed frames/s ``cores`` give when they do nothing but the patrol's stages (core-ms per
    analysed frame from ``time_stages``, the motion gate's too where the camera gates), and the part
    of it ``analysed_fps`` reaches."""
    core_ms = dict(stage_timing["ms_per_frame"])
    if stage_timing["motion_gating"]:
        core_ms["motion_gate"] = stage_timing["motion_gate_ms_per_frame"]
    bound_fps = cores * 1000 / sum(core_ms.values())
    fraction = analysed_fps / bound_fps
    return {"core_ms_per_frame": core_ms, "cores": cores, "bound_fps": bound_fps, "fraction": fraction,
            "target": TARGET_OF_CPU_BOUND, "met": fraction >= TARGET_OF_CPU_BOUND}


def ratio(ours: float, theirs: float | None) -> float | None:
    return None if not theirs else ours / theirs


def prepared_inputs(video: Video, detector: Detector, limit: int) -> tuple[list[np.ndarray], int]:
    """Input tensors of up to ``limit`` of the frames a replay analyses, and how many it analyses in all."""
    frames, analysed = analysed_frames(video, limit)
    return [next(detector.prepare([image])).tensor.copy() for image in frames], analysed


def bare_session(session: ort.InferenceSession, tensors: list[np.ndarray], runs: int, at_once: int) -> dict:
    """``runs`` runs of ``session`` over ``tensors``, ``at_once`` of them side by side."""
    name = session.get_inputs()[0].name
    for tensor in tensors[:3]:  # the first runs set up ONNX Runtime's buffers
        session.run(None, {name: tensor})

    def share(first: int) -> None:
        for index in range(first, runs, at_once):
            session.run(None, {name: tensors[index % len(tensors)]})

    workers = [threading.Thread(target=share, args=(first,)) for first in range(at_once)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    return {"frames_analysed": runs, "seconds": seconds, "analysed_fps": runs / seconds, "runs_at_once": at_once}


def replay_in_child(video: Video, settings: Settings) -> dict:
    with settings.scratch() as out:
        command = [sys.executable, "-m", "pipeline.cli.main", "replay", str(video.path), "--camera",
                   str(video.camera_file), "--out", out, "--model", str(settings.model), "--conf", str(settings.conf),
                   "--camera-setting", "adaptive_rate=false"]  # every sampled frame analysed, as open_video says
        if settings.threads is not None:
            command += ["--threads", str(settings.threads)]
        stdout, peak_mb = run_child(command)
    found = SUMMARY.search(stdout)
    if found is None:
        raise RuntimeError(f"patrol replay printed no summary:\n{stdout}")
    return {"frames_decoded": int(found[1]), "frames_analysed": int(found[2]), "analysed_fps": float(found[3]),
            "peak_rss_mb": peak_mb}


def find_ultralytics_python(given: str | None) -> str | None:
    """The Python that runs the ultralytics side: ``given``, else $ULTRALYTICS_PYTHON, else a
    train venv in the repo (``.venv-train``, see README) or beside it (``../train-venv``)."""
    if given:
        if not _has_ultralytics(given):
            raise ValueError(f"--ultralytics-python {given}: cannot import ultralytics and lap (its tracker) with "
                             "it; install the train extra there (pip install -e '.[train]')")
        return given
    candidates = [os.environ.get("ULTRALYTICS_PYTHON"), REPO / ".venv-train" / "bin" / "python",
                  REPO.parent / "train-venv" / "bin" / "python"]
    return next((str(c) for c in candidates if c and Path(c).is_file() and _has_ultralytics(str(c))), None)


def _has_ultralytics(python: str) -> bool:
    try:
        found = subprocess.run([python, "-c", "import ultralytics, lap"], check=False, capture_output=True,
                               timeout=120)
        return found.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ultralytics_in_child(video: Video, detector: Detector, settings: Settings) -> dict:
    stride = max(1, round(video.fps / video.camera.analysis_fps))
    command = [settings.ultralytics_python, str(Path(__file__).with_name("ultralytics_side.py")), "--model",
               str(settings.model),
               "--video", str(video.path), "--imgsz", str(max(detector.input_size_for((video.width, video.height)))),
               "--conf", str(settings.conf), "--vid-stride", str(stride)]
    # offline and without installing anything: the comparison must not depend on the network
    stdout, peak_mb = run_child(command, {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"})
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "vid_stride": stride, "peak_rss_mb": peak_mb}
