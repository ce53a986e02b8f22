"""4. Motion gating and cross-camera batching.

Gating: the same replay with ``motion_gating`` off and on, on the shipped sample street (busy:
traffic all along) and on a mostly static street (the same timeline, one passer-by in eight).
Reported: the share of analysed frames on which the network did not run, analysed frames/s, and
the cases, matched against each video's ground-truth episodes: gating must find exactly the
episodes that the run without it finds (``recall_equal``), and the case ids are compared too.

Batching: N cameras of the 1080p street at 5 analysis fps, more than the box keeps up with, in the
live patrol with one batch of up to N frames per network run and the 0.1 s flush deadline,
against one frame per run; the total analysed frames/s is the throughput, runs alternating. The
detector alone is timed at batch sizes 1..N on the same frames, which is what batching buys the
network itself on this hardware.
"""

from __future__ import annotations

import time

from benchmarks.cameras import patrol_step
from benchmarks.common import (
    Settings,
    Video,
    analysed_frames,
    expected_cases,
    found_episodes,
    median,
    quiet_street,
    replay_video,
    sample_street,
    street,
    write_result,
)
from benchmarks.plot import bar_chart
from pipeline.detect import Detector


def run(settings: Settings, gating_videos: list[Video] | None = None, batching_video: Video | None = None) -> dict:
    """Default videos: the quiet street and the sample street (gating), the 1080p street (batching)."""
    detector = Detector(settings.model, conf_threshold=settings.conf, intra_op_threads=settings.threads)
    gating = [gating_on(video, detector, settings) for video in gating_videos or [quiet_street(settings),
                                                                                  sample_street()]]
    batching = batching_on(batching_video or street(settings, 1920, 1080), detector, settings)
    result = {"gating": gating, "batching": batching}
    write_result(settings, "gating", result)
    bar_chart(settings.out / "gating.png", "Network runs per analysed frame, motion gating off / on",
              [f"{g['video']['key']}: {mode}" for g in gating for mode in ("off", "on")],
              [100 * (1 - g[mode]["gated_share"]) for g in gating for mode in ("off", "on")], "% of frames detected")
    return result


def gating_on(video: Video, detector: Detector, settings: Settings) -> dict:
    expected = expected_cases(video)
    runs = {}
    for mode, enabled in (("off", False), ("on", True)):
        camera = video.camera.model_copy(
            update={"motion_gating": video.camera.motion_gating.model_copy(update={"enabled": enabled})})
        result = replay_video(video, detector, settings, camera)
        summary = result.summary
        found = found_episodes(result.cases, expected)
        runs[mode] = {
            "frames_analysed": summary.frames_analysed, "frames_gated": summary.frames_gated,
            "gated_share": summary.frames_gated / summary.frames_analysed if summary.frames_analysed else 0.0,
            "analysed_fps": summary.analysed_fps, "cases": len(result.cases),
            "case_ids": sorted(case["case_id"] for case in result.cases),
            "episodes_found": len(found), "found": [list(episode) for episode in found],
        }
        print(f"bench gating {video.key}: gating {mode}: {summary.frames_gated}/{summary.frames_analysed} frames "
              f"spared the network, {summary.analysed_fps:.1f} analysed fps, {len(found)}/{len(expected)} episodes",
              flush=True)
    off, on = runs["off"], runs["on"]
    return {
        "video": video.describe(), "episodes_expected": len(expected), "off": off, "on": on,
        "inferences_saved": on["gated_share"], "recall_off": off["episodes_found"] / len(expected) if expected else None,
        "recall_on": on["episodes_found"] / len(expected) if expected else None,
        "recall_equal": off["found"] == on["found"], "same_case_ids": off["case_ids"] == on["case_ids"],
    }


def batching_on(video: Video, detector: Detector, settings: Settings) -> dict:
    budget = settings.budget
    cameras, rounds = budget.batching_cameras, budget.rounds
    warm_up_s, window_s = budget.warm_up_s, budget.window_s
    modes = {"batched": {"max_batch": None, "batch_deadline_s": 0.1}, "one_by_one": {"max_batch": 1,
                                                                                  "batch_deadline_s": 0.0}}
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for round_index in range(rounds):
        for mode in list(modes)[round_index % 2:] + list(modes)[: round_index % 2]:
            step = patrol_step(video, 5.0, cameras, detector, settings, warm_up_s, window_s, **modes[mode])
            runs[mode].append(step)
            print(f"bench batching {cameras} cameras {mode}: {step['total_analysed_fps']:.1f} analysed fps in all",
                  flush=True)
    totals = {mode: median([step["total_analysed_fps"] for step in steps]) for mode, steps in runs.items()}
    return {
        "video": video.describe(), "cameras": cameras, "analysis_fps": 5.0, "modes": modes, "runs": runs,
        "median_total_fps": totals, "batched_vs_one_by_one": totals["batched"] / totals["one_by_one"]
        if totals["one_by_one"] else None,
        "detector_ms_per_frame": detector_batches(video, detector, cameras),
    }


def detector_batches(video: Video, detector: Detector, largest: int) -> dict[str, float]:
    """ms per frame of ``detector.detect`` on batches of 1, 2, 4 .. ``largest`` frames."""
    frames, _ = analysed_frames(video, largest)
    sizes = sorted({1, *(2**k for k in range(1, largest.bit_length()) if 2**k <= largest), largest})
    timings = {}
    for size in sizes:
        batch = [frames[index % len(frames)] for index in range(size)]
        detector.detect(batch)  # buffers for this batch size
        repeats = max(3, 24 // size)
        started = time.perf_counter()
        for _ in range(repeats):
            detector.detect(batch)
        timings[str(size)] = 1000 * (time.perf_counter() - started) / (repeats * size)
    return timings
