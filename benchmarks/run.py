"""Runs the benchmarks `patrol bench` names and prints (and writes, as ``summary.md``) the short table.

    patrol bench [all|compare|stages|cameras|gating|gpu] [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks import cameras, compare, gating, gpu, stages
from benchmarks.common import Settings, machine, median
from benchmarks.stages import STAGES

BENCHMARKS: dict[str, Callable[[Settings], dict]] = {
    "compare": compare.run, "stages": stages.run, "cameras": cameras.run, "gating": gating.run, "gpu": gpu.run,
}


def run_benchmarks(which: str, settings: Settings) -> dict[str, dict]:
    names = list(BENCHMARKS) if which == "all" else [which]
    started = time.monotonic()
    results = {}
    for name in names:
        began = time.monotonic()
        results[name] = BENCHMARKS[name](settings)
        print(f"bench {name}: done in {time.monotonic() - began:.0f}s", flush=True)
    table = summary(results, settings, time.monotonic() - started)
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return results


def summary(results: dict[str, dict], settings: Settings, seconds: float) -> str:
    box = machine()
    lines = [(f"Machine: {box['cpu']}, {box['cores']} cores, {box['memory_gib']} GiB; load average at the end "
             f"{box['load_average'][0]:g}; ONNX Runtime {box['onnxruntime']} ({', '.join(box['providers'])}); "
             f"{'quick' if settings.quick else 'full'} run, {seconds / 60:.1f} min.")]
    for name, render in (("compare", _compare), ("stages", _stages), ("cameras", _cameras), ("gating", _gating),
                         ("gpu", _gpu)):
        if name in results:
            lines += ["", *render(results[name])]
    return "\n".join(lines)


def _compare(result: dict) -> list[str]:
    targets = result["targets"]
    lines = [(f"Throughput, analysed frames/s (median of {result['rounds']} alternating runs, same ONNX model and "
              "input size; CPU bound: the cores divided by the core-ms per analysed frame of every stage of the "
              "patrol; bare ORT, a reference: the network alone on the same letterboxed frames, as many runs at "
              "once as the patrol; ORT defaults: a default session, one run at a time)"),
             ("| video | input | CPU bound | patrol replay | replay / CPU bound | ultralytics | replay / ultralytics | "
              "bare ORT | bare ORT, ORT defaults | replay / bare ORT |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for run in result["videos"]:
        fps = run["median_fps"]
        bound = run["cpu_bound"]
        width, height = run["input_size"]
        ultralytics = f"{fps['ultralytics']:.1f}" if "ultralytics" in fps else f"not run: {run['ultralytics_skipped']}"
        lines.append(f"| {run['video']['key']} | {width}x{height} | {bound['bound_fps']:.1f} | {fps['replay']:.1f} | "
                     f"{_against(bound['fraction'], targets['of_cpu_bound'])} | {ultralytics} | "
                     f"{_against(run['vs_ultralytics'], targets['vs_ultralytics'])} | {fps['bare_ort']:.1f} | "
                     f"{fps['bare_ort_defaults']:.1f} | {run['vs_bare_ort']:.2f}x |")
    for run in result["videos"]:
        bound = run["cpu_bound"]
        core_ms = bound["core_ms_per_frame"]
        by_stage = ", ".join(f"{stage} {ms:.2f}" for stage, ms in core_ms.items())
        lines.append(f"CPU bound of {run['video']['key']}: {bound['cores']} cores / {sum(core_ms.values()):.2f} "
                     f"core-ms per analysed frame ({by_stage})")
    peaks = []
    for run in result["videos"]:
        memory = {name: median([r["peak_rss_mb"] for r in runs]) for name, runs in run["runs"].items()
                  if name in ("replay", "ultralytics")}
        peaks.append(f"{run['video']['key']} " + ", ".join(f"{name} {mb:.0f} MiB" for name, mb in memory.items()))
    lines.append("Peak memory of the process: " + "; ".join(peaks))
    lines.append(f"Targets, on every video: replay at >= {targets['of_cpu_bound']:g}x the CPU bound and >= "
                 f"{targets['vs_ultralytics']:g}x ultralytics: {'met' if result['targets_met'] else 'NOT met'}")
    return lines


def _against(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "-"
    verdict = "met" if ratio >= target else f"missed by {target - ratio:.2f}"
    return f"{ratio:.2f}x (target {target:g}x: {verdict})"


def _stages(result: dict) -> list[str]:
    lines = ["Where the time goes, core-ms per analysed frame, stages one after the other on one thread",
             f"| video | {' | '.join(STAGES)} | total | motion gate (when on) |",
             "|---|" + "---|" * (len(STAGES) + 2)]
    for run in result["videos"]:
        ms = run["ms_per_frame"]
        lines.append(f"| {run['video']['key']} | {' | '.join(f'{ms[stage]:.2f}' for stage in STAGES)} | "
                     f"{run['total_ms_per_frame']:.2f} | {run['motion_gate_ms_per_frame']:.2f} |")
    cases = [run for run in result["videos"] if run["evidence_ms_per_case"] is not None]
    if cases:
        lines.append("Evidence per case: " + ", ".join(f"{run['video']['key']} {run['evidence_ms_per_case']:.0f} ms"
                                                      for run in cases))
    lines.append("Memory per camera (live patrol, RSS slope from 1 to 4 cameras): " + ", ".join(
        f"{m['video']['key']} {m['per_camera_mb']:.0f} MiB" for m in result["memory"])
                 + f"; the model loaded: {result['memory'][0]['model_loaded_rss_mb']:.0f} MiB")
    return lines


def _cameras(result: dict) -> list[str]:
    rates = sorted({sweep["analysis_fps"] for sweep in result["sweeps"]})
    lines = [(f"Cameras per box (every camera at >= {result['min_rate_share']:.0%} of the rate it asks for, lag < "
             f"{result['max_lag_s']:g} s)"), "| layout, street, model, CPU | " + " | ".join(f"{r:g} fps" for r in rates)
             + " |", "|---|" + "---|" * len(rates)]
    for row in dict.fromkeys(cameras.row_name(sweep) for sweep in result["sweeps"]):
        cells = []
        for rate in rates:
            sweep = next((s for s in result["sweeps"] if cameras.row_name(s) == row and s["analysis_fps"] == rate),
                         None)
            cells.append("-" if sweep is None else f"{sweep['cameras_per_box']}" + (
                f" ({sweep['first_failing']} fail)" if sweep["first_failing"] else ""))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _gating(result: dict) -> list[str]:
    lines = ["Motion gating (replay with it off / on)",
             ("| video | frames without a network run | analysed fps off / on | episodes found off / on | "
             "recall equal | same case ids |"), "|---|---|---|---|---|---|"]
    for run in result["gating"]:
        off, on = run["off"], run["on"]
        lines.append(f"| {run['video']['key']} | {run['inferences_saved']:.0%} | {off['analysed_fps']:.1f} / "
                     f"{on['analysed_fps']:.1f} | {off['episodes_found']}/{run['episodes_expected']} / "
                     f"{on['episodes_found']}/{run['episodes_expected']} | {'yes' if run['recall_equal'] else 'NO'} | "
                     f"{'yes' if run['same_case_ids'] else 'no'} |")
    batching = result["batching"]
    totals = batching["median_total_fps"]
    by_batch = ", ".join(f"{size}: {ms:.1f}" for size, ms in batching["detector_ms_per_frame"].items())
    lines.append(f"Batching, {batching['cameras']} cameras of {batching['video']['key']} at 5 fps, total analysed "
                 f"fps: one batch per deadline {totals['batched']:.1f}, one by one {totals['one_by_one']:.1f} "
                 f"({batching['batched_vs_one_by_one']:.2f}x); the detector alone, ms per frame by batch size: "
                 f"{by_batch}")
    return lines


def _gpu(result: dict) -> list[str]:
    lines = ["GPU run" + ("" if result["gpu_measured"] else " (no GPU measured: CPU figures only; each GPU part says why)")]
    for run in result["inference"]:
        if run["available"]:
            streams = (f"{run['streams_per_device']} streams at 5 fps" if run["streams_per_device"] is not None
                       else "network and decoder share the cores: see cameras per box")
            lines.append(f"- {run['name']}: best {run['best_fps']:.0f} analysed 1080p frames/s at batch "
                         f"{run['best_batch']}; {streams} (network alone {run['streams_by_network']:.1f}, "
                         f"decoder alone {run['streams_by_decoder']:.1f})")
        else:
            lines.append(f"- {run['name']}: not available ({run['reason']})")
    for run in result["decode"]:
        lines.append(f"- decode {run['name']}: " + (f"{run['frames_per_s']:.0f} frames/s" if run["available"]
                                                     else f"not available ({run['reason']})"))
    return lines
