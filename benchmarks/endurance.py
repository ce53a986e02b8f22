"""One live patrol of many cameras for an hour: is its memory flat, does every camera keep up?

    python -m benchmarks.endurance --cameras 24 --fps 5 --minutes 60   # benchmarks/results/endurance.{json,png}

Not part of CI. The cameras are those of ``patrol bench cameras --layout sub+main`` on the mostly
static street (``--street busy`` for the busy one): each records the 1920x1080 street, looped and
only demuxed into its clip ring, and analyses its 640x360 sub-stream with motion gating and the
adaptive rate on, camera i from (i mod 8) eighths into the street. The patrol runs in this process
as ``patrol run`` runs it (malloc arenas capped the same way), filing into an embedded queue under
``--work``.

Every ``--every`` seconds a row: resident memory, threads, open descriptors, the bytes held in the
cameras' packet rings, each camera's share of the frames it sampled that reached its analysis
(``patrol bench cameras``'s keeping-up measure) and the worst lag over the interval, cases filed.
Memory per camera: the resident memory after the warm-up, less that of the same process with the
model loaded before any camera started, over the cameras (the main streams' packet rings
included). Flat: the least-squares slope of resident memory over the run's second half, in MB per
hour, beside the range it moved in.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.cameras import STATIC_S, camera_configs
from benchmarks.common import Settings, Video, quiet_street, rss_mb, street, sub_main, write_result
from benchmarks.plot import line_chart
from pipeline.config import Workspace
from pipeline.detect import Detector
from pipeline.engine import Patrol, embedded_cases
from pipeline.engine.allocator import cap_malloc_arenas

REPO = Path(__file__).resolve().parents[1]


def process_counts() -> dict:
    return {"threads": threading.active_count(), "native_threads": len(os.listdir("/proc/self/task")),
            "open_fds": len(os.listdir("/proc/self/fd"))}


def ring_bytes(patrol: Patrol) -> int:
    """Bytes of the packets the cameras' rings hold now (clip rings; a sub+main camera's main stream's too)."""
    return sum(camera.pipeline.ring.held_bytes for camera in patrol.cameras)


def run(settings: Settings, video: Video, cameras: int, analysis_fps: float, minutes: float, every_s: float,
        warm_up_s: float = 60.0) -> dict:
    """``cameras`` copies of ``video``'s camera (a sub+main one) in one live patrol for ``minutes``."""
    detector = Detector(settings.model, conf_threshold=settings.conf, intra_op_threads=settings.threads)
    configs = camera_configs(video, analysis_fps, cameras, settings)
    model_loaded_mb = rss_mb()
    rows: list[dict] = []
    with settings.scratch() as scratch:
        cases = embedded_cases(Workspace(Path(scratch)), {"name": detector.card.name, "sha256": detector.card.sha256})
        filed: list[str] = []
        cases.filer.listeners.append(lambda record, is_new: filed.append(record.case_id) if is_new else None)
        patrol = Patrol(configs, detector, cases, loop_files=True, health_every_s=3600, print_line=lambda _: None)
        runner = threading.Thread(target=patrol.run, name="endurance-patrol")
        started = time.monotonic()
        runner.start()
        try:
            time.sleep(warm_up_s)
            warm_mb = rss_mb()
            end = started + warm_up_s + minutes * 60
            while time.monotonic() < end:
                rows.append(interval(patrol, analysis_fps, every_s, started) | {"cases_filed": len(filed)})
                print(f"{rows[-1]['at_s'] / 60:5.1f} min  rss {rows[-1]['rss_mb']:7.1f} MB  "
                      f"rate share {rows[-1]['min_rate_share']:.2f}  lag {rows[-1]['max_lag_s']}  "
                      f"cases {rows[-1]['cases_filed']}", flush=True)
        finally:
            patrol.stop()
            runner.join()
            cases.filer.close(drain_timeout_s=30)
    result = summarise(rows, cameras, model_loaded_mb, warm_mb) | {
        "layout": "sub+main", "street": video.street, "analysis_fps": analysis_fps, "cameras": cameras,
        "model": Path(settings.model).stem, "minutes": minutes, "warm_up_s": warm_up_s, "every_s": every_s,
        "video": video.describe(), "rows": rows}
    write_result(settings, "endurance", result)
    hours = [row["at_s"] / 3600 for row in rows]
    line_chart(settings.out / "endurance.png", f"{cameras} sub+main cameras at {analysis_fps:g} fps: resident memory",
               {"resident memory, MB": (hours, [row["rss_mb"] for row in rows])}, "hours", "MB")
    return result


def interval(patrol: Patrol, analysis_fps: float, every_s: float, started: float) -> dict:
    """One row: the process now, and each camera over the next ``every_s`` seconds."""
    before, begun, lags = [camera.counters() for camera in patrol.cameras], time.monotonic(), []
    while time.monotonic() - begun < every_s:
        time.sleep(0.5)
        lags += [camera.lag_s for camera in patrol.report().cameras if camera.lag_s is not None]
    elapsed = time.monotonic() - begun
    after = [camera.counters() for camera in patrol.cameras]
    decided = [(a.analysed + a.passed_over - b.analysed - b.passed_over) / elapsed
               for a, b in zip(after, before, strict=True)]
    analysed = sum(a.analysed - b.analysed for a, b in zip(after, before, strict=True)) / elapsed
    return {"at_s": round(time.monotonic() - started, 1), "rss_mb": rss_mb(), **process_counts(),
            "ring_mb": round(ring_bytes(patrol) / 2**20, 2), "min_rate_share": round(min(decided) / analysis_fps, 3),
            "analysed_fps": round(analysed, 2), "max_lag_s": round(max(lags), 3) if lags else None}


def summarise(rows: list[dict], cameras: int, model_loaded_mb: float, warm_mb: float) -> dict:
    half = rows[len(rows) // 2:]
    hours = np.array([row["at_s"] for row in half]) / 3600
    rss = np.array([row["rss_mb"] for row in half])
    slope = float(np.polyfit(hours, rss, 1)[0]) if len(half) >= 2 else None
    return {"model_loaded_rss_mb": model_loaded_mb, "warm_rss_mb": warm_mb,
            "per_camera_mb": (warm_mb - model_loaded_mb) / cameras,
            "second_half": {"rss_slope_mb_per_hour": slope, "rss_min_mb": float(rss.min()),
                            "rss_max_mb": float(rss.max()),
                            "threads": sorted({row["native_threads"] for row in half}),
                            "open_fds": sorted({row["open_fds"] for row in half})},
            "kept_up": all(row["min_rate_share"] >= 0.9 and (row["max_lag_s"] or 0) < 1.0 for row in rows),
            "intervals_behind": sum(row["min_rate_share"] < 0.9 or (row["max_lag_s"] or 0) >= 1.0 for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one live sub+main patrol for an hour: memory and keeping up")
    parser.add_argument("--cameras", type=int, default=24)
    parser.add_argument("--fps", type=float, default=5.0, help="each camera's analysis_fps")
    parser.add_argument("--minutes", type=float, default=60.0, help="measured, after a minute's warm-up")
    parser.add_argument("--every", type=float, default=30.0, help="seconds per row")
    parser.add_argument("--street", choices=("static", "busy"), default="static")
    parser.add_argument("--model", default=str(REPO / "models" / "patrol-street-int8.onnx"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--work", default=str(REPO / "var" / "bench"))
    args = parser.parse_args(argv)
    cap_malloc_arenas()  # as `patrol run` does, before the first camera thread
    # quick: the busy street as `patrol bench cameras --quick` renders it (20 s, looped); the static
    # one is 150 s either way
    settings = Settings(quick=True, out=Path(args.out), work=Path(args.work), model=Path(args.model))
    main_stream = (quiet_street(settings, 1920, 1080, STATIC_S) if args.street == "static"
                   else street(settings, 1920, 1080))
    result = run(settings, sub_main(settings, main_stream), args.cameras, args.fps, args.minutes, args.every)
    half = result["second_half"]
    print(f"{args.cameras} cameras: {result['per_camera_mb']:.1f} MB per camera; second half "
          f"{half['rss_min_mb']:.0f}-{half['rss_max_mb']:.0f} MB, slope {half['rss_slope_mb_per_hour']} MB/h; "
          f"kept up: {result['kept_up']} ({result['intervals_behind']} of {len(result['rows'])} intervals behind)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
