"""3. Cameras per box: how many synthetic street cameras one box keeps up with.

N cameras play a synthetic street at real time, looping, through the live patrol (decode thread
per camera, one batched inference loop, evidence pool, spool and queue in a temporary folder), at
analysis fps 2 and 5, in three layouts: the 1080p street analysed (``1080p``), its 640x360
rendering analysed (``360p``), and ``sub+main``, a camera that names its sub-stream: the 1080p
15 fps street as ``url`` (only demuxed into the clip ring) and the same pictures at 640x360 as
``detect_url`` (analysed), on the busy street and on a mostly static one, with motion gating on and
the adaptive rate on (its default; the other layouts analyse every sampled frame).

After a warm-up, each camera's analysed frames/s and lag (decode to end of analysis of its newest
frame, ``patrol.report()``) are read over a window of the budget's length, or of 12 frames at its
analysis fps if that is longer. The rate a camera asks for is its ``analysis_fps`` times the share
of the frames that reached its ``AnalysisRate`` (analysed, or passed over while every zone was
still) that the rate chose to analyse: ``analysis_fps`` without the adaptive rate, less while the
street is still. Analysing 90 % of that rate is the same as 90 % of the frames it samples at
``analysis_fps`` reaching the rate's decision rather than being dropped because the patrol fell
behind; without the adaptive rate, 90 % of ``analysis_fps``. (The rate's own state, ``full`` or
``still``, averaged over the window reads about 3 % above what it analyses even on an idle box: it
stays ``full`` until the frame after the settle time.) N keeps up when every camera analyses at
least 90 % of the rate it asks for and no lag reaches 1 s. N doubles until it fails, then the gap
is bisected; the answer is the largest N that kept up.

The cameras all start at about the same moment, so their frames arrive nearly together; real
cameras arrive out of step and wait up to the patrol's batch flush deadline. In the 1080p and 360p
layouts they all play the same file from its start; in sub+main, camera i plays the street from
(i % 8) eighths into it (both streams from the same keyframe), so that the window of a step sees
the street's whole timeline, its busy and its still moments, and not every camera's first seconds.

``cameras.json`` keeps the sweeps of earlier runs that this one did not repeat (another layout,
street, rate, model or CPU), each saying when, on which CPU and with which model it was measured,
and lists every sweep's answer under ``entries``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from benchmarks.common import Settings, Video, machine, median, quiet_street, rotated, street, sub_main, write_result
from benchmarks.plot import line_chart
from pipeline.config import CameraConfig, Workspace
from pipeline.detect import Detector
from pipeline.engine import Patrol, embedded_cases

MAX_LAG_S = 1.0
MIN_RATE_SHARE = 0.9  # of the rate it asks for, for every camera
# A window that holds few of a camera's frames fails it for where the window happened to fall:
# 3 s at 2 fps holds 5 or 6, and 5 reads as 83 %. With 12, one frame less still reads above 90 %.
MIN_FRAMES_IN_WINDOW = 12
LAYOUTS = ("1080p", "360p", "sub+main")
PHASES = 8  # sub+main: camera i starts (i % 8) eighths into the street's timeline
# The static street's whole timeline, quick run or not: squeezed into 60 s it is busy (93 % of the
# frames sampled at 5 fps analysed with the adaptive rate, 63 % over 150 s).
STATIC_S = 150.0


def layout_videos(settings: Settings, layout: str | None = None) -> list[Video]:
    """The cameras of ``layout`` (default: of every layout)."""
    videos = {
        "1080p": lambda: [street(settings, 1920, 1080)],
        "360p": lambda: [street(settings, 640, 360)],
        "sub+main": lambda: [sub_main(settings, street(settings, 1920, 1080)),
                             sub_main(settings, quiet_street(settings, 1920, 1080, STATIC_S))],
    }
    return [video for name in ([layout] if layout else LAYOUTS) for video in videos[name]()]


def run(settings: Settings, videos: list[Video] | None = None, rates: tuple[float, ...] = (2.0, 5.0)) -> dict:
    """Default videos: those of ``settings.layout``, or of every layout."""
    detector = Detector(settings.model, conf_threshold=settings.conf, intra_op_threads=settings.threads)
    sweeps = [sweep(video, analysis_fps, detector, settings)
              for video in videos or layout_videos(settings, settings.layout) for analysis_fps in rates]
    sweeps = earlier_sweeps(settings, sweeps) + sweeps
    result = {"max_lag_s": MAX_LAG_S, "min_rate_share": MIN_RATE_SHARE, "entries": [entry(s) for s in sweeps],
              "sweeps": sweeps}
    write_result(settings, "cameras", result)
    series = {}
    for sweep_result in sweeps:
        measured = [step for step in sweep_result["steps"] if step["max_lag_s"] is not None]
        series[f"{row_name(sweep_result)} @ {sweep_result['analysis_fps']:g} fps"] = (
            [step["cameras"] for step in measured], [step["max_lag_s"] for step in measured])
    line_chart(settings.out / "cameras.png", "Worst camera lag against cameras per box", series, "cameras",
               "worst lag, s", limit=MAX_LAG_S)
    return result


def layout_of(video: Video) -> str:
    return "sub+main" if video.camera.detect_url else f"{video.height}p"


def same_sweep(sweep_result: dict) -> tuple:
    return (sweep_result.get("layout"), sweep_result.get("street"), sweep_result["analysis_fps"],
            sweep_result.get("model"), sweep_result.get("cpu"))


def row_name(sweep_result: dict) -> str:
    """A sweep's row in tables and charts: layout, street, model, CPU (the video's key for older sweeps)."""
    if "layout" not in sweep_result:
        return sweep_result["video"]["key"]
    street_or_video = sweep_result["street"] or sweep_result["video"]["key"]
    return f"{sweep_result['layout']}, {street_or_video}, {sweep_result['model']}, {sweep_result['cpu']}"


def earlier_sweeps(settings: Settings, sweeps: list[dict]) -> list[dict]:
    """The sweeps of ``cameras.json`` that ``sweeps`` do not measure again (on this CPU)."""
    path = settings.out / "cameras.json"
    if not path.is_file():
        return []
    measured = {same_sweep(s) for s in sweeps}
    return [s for s in json.loads(path.read_text())["sweeps"] if same_sweep(s) not in measured]


def entry(sweep_result: dict) -> dict:
    fps = sweep_result["analysis_fps"]
    return {"layout": sweep_result.get("layout"), "fps": int(fps) if fps == int(fps) else fps,
            "largest_n": sweep_result["cameras_per_box"], "street": sweep_result.get("street"),
            "model": sweep_result.get("model"), "cpu": sweep_result.get("cpu")}


def sweep(video: Video, analysis_fps: float, detector: Detector, settings: Settings) -> dict:
    """Doubling N until a step fails, then bisecting (as far as the budget says)."""
    budget = settings.budget
    warm_up_s, window_s = budget.warm_up_s, max(budget.window_s, MIN_FRAMES_IN_WINDOW / analysis_fps)
    label = f"{layout_of(video)} {video.street or video.key} {Path(settings.model).stem}"
    steps: list[dict] = []

    def keeps_up(cameras: int) -> bool:
        step = patrol_step(video, analysis_fps, cameras, detector, settings, warm_up_s, window_s)
        steps.append(step)
        lag = "-" if step["max_lag_s"] is None else f"{step['max_lag_s']:.2f}s"
        print(f"bench cameras {label} @ {analysis_fps:g} fps: {cameras} camera(s) worst "
              f"{step['min_rate_share']:.0%} of the rate asked ({step['min_analysed_fps']:.2f} analysed fps), "
              f"worst lag {lag} "
              f"-> {'keeps up' if step['keeps_up'] else 'falls behind'}", flush=True)
        return step["keeps_up"]

    good, bad = 0, None
    cameras = 1
    while cameras <= budget.max_cameras and keeps_up(cameras):
        good, cameras = cameras, cameras * 2
    bad = cameras if cameras <= budget.max_cameras else None
    bisections = budget.bisections
    while bad is not None and bad - good > 1 and bisections:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if keeps_up(middle) else (good, middle)
        bisections -= 1
    steps.sort(key=lambda step: step["cameras"])
    return {"layout": layout_of(video), "street": video.street, "model": Path(settings.model).stem,
            "model_sha256": detector.card.sha256, "cpu": machine()["cpu"],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": settings.quick, "video": video.describe(),
            "analysis_fps": analysis_fps, "warm_up_s": warm_up_s, "window_s": window_s, "cameras_per_box": good,
            "first_failing": bad, "steps": steps}


def camera_configs(video: Video, analysis_fps: float, cameras: int, settings: Settings) -> list[CameraConfig]:
    """``cameras`` copies of ``video``'s camera. With a main stream (sub+main), camera i plays both
    streams from the keyframe (i % PHASES) / PHASES into the street: out of step as real cameras
    are, and all together as busy or as still as the whole street rather than as its first seconds."""
    configs = []
    for index in range(cameras):
        update: dict = {"id": f"cam-{index}", "analysis_fps": analysis_fps}
        if video.main is not None:
            start_s = index % PHASES * video.duration_s / PHASES
            update |= {"url": str(rotated(settings, video.main.path, start_s)),
                       "detect_url": str(rotated(settings, video.path, start_s))}
        configs.append(video.camera.model_copy(update=update))
    return configs


def patrol_step(video: Video, analysis_fps: float, cameras: int, detector: Detector, settings: Settings,
                warm_up_s: float, window_s: float, **patrol_options) -> dict:
    """``cameras`` copies of ``video``'s camera in a live patrol; rates and lags after ``warm_up_s``."""
    configs = camera_configs(video, analysis_fps, cameras, settings)
    with settings.scratch() as scratch:
        cases = embedded_cases(Workspace(Path(scratch)), {"name": detector.card.name, "sha256": ""})
        patrol = Patrol(configs, detector, cases, loop_files=True, health_every_s=3600, print_line=lambda _: None,
                        **patrol_options)
        runner = threading.Thread(target=patrol.run, name="bench-patrol")
        runner.start()
        try:
            time.sleep(warm_up_s)
            before = [camera.counters() for camera in patrol.cameras]
            started = time.monotonic()
            lags: list[float] = []
            while time.monotonic() - started < window_s:
                time.sleep(0.1)
                lags += [camera.lag_s for camera in patrol.report().cameras if camera.lag_s is not None]
            elapsed = time.monotonic() - started
            after = [camera.counters() for camera in patrol.cameras]
        finally:
            patrol.stop()
            runner.join()
            cases.filer.close(drain_timeout_s=0)
    rates = [(a.analysed - b.analysed) / elapsed for a, b in zip(after, before, strict=True)]
    inference_ms = [1000 * (a.inference_s - b.inference_s) / max(1, a.analysed - b.analysed)
                    for a, b in zip(after, before, strict=True)]
    network_runs = sum((a.analysed - a.gated) - (b.analysed - b.gated) for a, b in zip(after, before, strict=True))
    # frames/s that reached each camera's analysis: analysed, or passed over by the adaptive rate
    decided = [(a.analysed + a.passed_over - b.analysed - b.passed_over) / elapsed
               for a, b in zip(after, before, strict=True)]
    asked = [analysis_fps * rate / seen if seen else analysis_fps for rate, seen in zip(rates, decided, strict=True)]
    max_lag = max(lags) if lags else None  # None: no frame was analysed in the window
    return {
        "cameras": cameras, "min_analysed_fps": min(rates), "median_analysed_fps": median(rates),
        "total_analysed_fps": sum(rates), "min_asked_fps": min(asked), "median_asked_fps": median(asked),
        "min_rate_share": min(decided) / analysis_fps, "network_runs_per_s": network_runs / elapsed,
        "max_lag_s": max_lag, "median_lag_s": median(lags),
        "inference_ms_per_frame": median(inference_ms),
        # analysed >= 90 % of asked, i.e. decided >= 90 % of analysis_fps (analysed, without the adaptive rate)
        "keeps_up": min(decided) >= MIN_RATE_SHARE * analysis_fps and max_lag is not None and max_lag < MAX_LAG_S,
    }
