"""2. Where the time goes: each stage in core-ms per analysed frame, and memory per camera.

The stages run one after the other on one thread (no overlap), each timed on the process's CPU
clock (``time.process_time``): core time, so a network on several intra-op threads counts all of
them, as does the spool drainer's delivery of the cases filed, while waiting for a core on a
shared machine counts nothing. Decode is all the decoding thread does: demuxing, copying packets
into the clip ring, decoding every frame of the stream and converting the sampled ones to BGR.
Then preprocess (letterbox into the input tensor), inference (the network), postprocess (output
decoding and NMS), track, rules, and evidence writing (pictures, clip, metadata and sha256s into
the spool, per case and spread over the frames). The motion gate's own cost is timed beside them;
on a camera that gates, its frames skip the network as in a replay.

Memory per camera: resident memory (/proc/self/status) of a live patrol in a fresh process after
running with 1 and with N cameras of the same stream; the slope is one camera's share (decoder
buffers, 30 s packet ring, newest frame, tracker, frames held as evidence).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Settings, Video, real_video, rss_mb, run_child, sample_street, street, write_result
from benchmarks.plot import bar_chart
from pipeline.config import Workspace
from pipeline.detect import Detector, MotionGate
from pipeline.engine import CameraPipeline, Patrol, StageTimer, embedded_cases
from pipeline.ingest import decode

STAGES = ("decode", "preprocess", "inference", "postprocess", "track", "rules", "evidence")


def run(settings: Settings, videos: list[Video] | None = None) -> dict:
    """Default videos: the 1080p street, its 360p sub-stream, the real video and the sample street
    (150 s: where cases, and so evidence writing, happen). Memory: the first two."""
    detector = Detector(settings.model, conf_threshold=settings.conf, intra_op_threads=settings.threads)
    videos = videos or [street(settings, 1920, 1080), street(settings, 640, 360), real_video(), sample_street()]
    timings = [time_stages(video, detector, settings) for video in videos]
    memory = [memory_per_camera(video, settings) for video in videos[:2]]
    result = {"videos": timings, "memory": memory}
    write_result(settings, "stages", result)
    main = timings[0]
    bar_chart(settings.out / "stages.png", f"core-ms per analysed frame by stage, {main['video']['key']}, one thread",
              list(STAGES), [main["ms_per_frame"][stage] for stage in STAGES], "core-ms per analysed frame")
    return result


def time_stages(video: Video, detector: Detector, settings: Settings) -> dict:
    """Core-ms per analysed frame of each stage over the whole of ``video``, one stage after the other."""
    camera = video.camera
    state = CameraPipeline(camera, case_namespace="bench:stages")
    gate = state.gate or MotionGate.for_camera(camera)  # the camera's own when it gates, else one timed beside
    cases = 0
    with settings.scratch() as scratch:
        filing = embedded_cases(Workspace(Path(scratch)), {"name": detector.card.name, "sha256": ""})
        frames = decode(str(video.path), camera_id=camera.id, analysis_fps=camera.analysis_fps, ring=state.ring,
                        stats=state.stats)
        timer = StageTimer(clock=time.process_time)  # core time of every thread, not wall time
        try:
            for frame in frames:
                timer.mark("decode")
                needs_network = gate.needs_detection(frame.image, frame.pts_s)
                timer.mark("motion_gate")
                detections = None  # gated: step reuses the last detections
                if needs_network or state.gate is None:
                    prepared = next(detector.prepare([frame.image]))
                    timer.mark("preprocess")
                    raw = detector.run(prepared)
                    timer.mark("inference")
                    (detections,) = detector.decode(raw)
                    timer.mark("postprocess")
                for violation in state.step(frame, detections, timer):
                    filing.file(state, violation)
                    cases += 1
                for case_id in state.clips_recorded():  # the clip completed: evidence's cost too
                    filing.complete(state, case_id)
                timer.mark("evidence")
            timer.mark("decode")  # the frames after the last analysed one
            for case_id in state.flush():
                filing.complete(state, case_id, post_roll_seen=False)
            timer.mark("evidence")
        finally:
            filing.filer.close(drain_timeout_s=0)
    seconds = timer.seconds
    analysed = state.stats.analysed
    per_frame = {stage: 1000 * seconds[stage] / analysed for stage in STAGES}
    return {
        "video": video.describe(), "frames_analysed": analysed, "frames_decoded": state.stats.received,
        "input_size": list(detector.input_size_for((video.width, video.height))), "ms_per_frame": per_frame,
        "total_ms_per_frame": sum(per_frame.values()),
        "motion_gate_ms_per_frame": 1000 * seconds["motion_gate"] / analysed,
        "motion_gating": state.gate is not None, "frames_gated": state.gated,
        "cases": cases, "evidence_ms_per_case": 1000 * seconds["evidence"] / cases if cases else None,
    }


def memory_per_camera(video: Video, settings: Settings) -> dict:
    """RSS of fresh processes patrolling 1 and N cameras of ``video``; the slope is one camera."""
    cameras = 4
    seconds = settings.budget.memory_s
    samples = {}
    for count in (1, cameras):
        command = [sys.executable, "-m", "benchmarks.stages", "--memory", str(video.path), "--camera-file",
                   str(video.camera_file), "--cameras", str(count), "--seconds", str(seconds), "--model",
                   str(settings.model)]
        stdout, _ = run_child(command)
        samples[count] = json.loads(stdout.strip().splitlines()[-1])
    per_camera = (samples[cameras]["rss_mb"] - samples[1]["rss_mb"]) / (cameras - 1)
    return {"video": video.describe(), "seconds": seconds, "rss_mb": {str(n): s["rss_mb"] for n, s in samples.items()},
            "model_loaded_rss_mb": samples[1]["model_loaded_rss_mb"], "per_camera_mb": per_camera}


def patrol_memory(video: Path, camera_file: Path, cameras: int, seconds: float, model: Path) -> dict:
    """In a fresh process: RSS once the model is loaded, and after ``cameras`` ran for ``seconds``."""
    from pipeline.config import load_camera

    detector = Detector(model)
    loaded = rss_mb()
    template = load_camera(camera_file)
    configs = [template.model_copy(update={"id": f"cam-{index}", "url": str(video)}) for index in range(cameras)]
    with tempfile.TemporaryDirectory() as scratch:
        cases = embedded_cases(Workspace(Path(scratch)), {"name": "m", "sha256": ""})
        patrol = Patrol(configs, detector, cases, loop_files=True, health_every_s=3600, print_line=lambda _: None)
        runner = threading.Thread(target=patrol.run)
        runner.start()
        time.sleep(seconds / 2)  # decoders, rings and trackers filled up
        running = []
        while len(running) < 10:
            running.append(rss_mb())
            time.sleep(seconds / 20)
        patrol.stop()
        runner.join()
        cases.filer.close(drain_timeout_s=0)
    return {"cameras": cameras, "model_loaded_rss_mb": loaded, "rss_mb": max(running)}


def main() -> None:
    parser = argparse.ArgumentParser(description="memory of a live patrol, in a fresh process (used by stages)")
    parser.add_argument("--memory", required=True, help="video every camera plays")
    parser.add_argument("--camera-file", required=True)
    parser.add_argument("--cameras", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    print(json.dumps(patrol_memory(Path(args.memory), Path(args.camera_file), args.cameras, args.seconds,
                                   Path(args.model))))


if __name__ == "__main__":
    main()
