"""What every benchmark shares: settings, the input videos (rendered once, cached), the machine, JSON, child
processes."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort

import pipeline
from pipeline.config import CameraConfig, Workspace, load_camera
from pipeline.detect import Detector
from pipeline.engine import ReplaySummary, embedded_cases, replay
from pipeline.synth import Scenario, render_video, sample_scenario

REPO = Path(pipeline.__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_MODEL = REPO / "models" / "patrol-street-int8.onnx"
STREET_CAMERA = REPO / "streams" / "sample-street.yaml"  # its zones are fractions: they fit any size of the street
SAMPLE_VIDEO = REPO / "streams" / "samples" / "sample-street.mp4"
CAR_LOT_CAMERA = Path(__file__).resolve().parent / "streams" / "car-lot.yaml"
REPLAY_START_WALL = 1_795_500_000.0  # a fixed scene clock, so case ids repeat from run to run
TRUTH_TOLERANCE_S = 3.0  # detection and tracking latency allowed on a case's confirmation time
SYNTH_SEED = 11


@dataclass(frozen=True)
class Budget:
    """How long each benchmark runs."""

    rounds: int  # alternating rounds of each contestant (compare, batching)
    compare_s: float  # each compared video is played over until it lasts at least this long
    bare_inputs: int  # analysed frames kept as input tensors for the bare session
    street_s: float  # length of the rendered synthetic streets
    # of each live patrol step, before measuring; after 1.5 s, 16 1080p cameras were still catching
    # up on their start (5.5 fps each at 5, lag 1.2 s) and failed a step they keep up with
    warm_up_s: float
    window_s: float  # measured, per live patrol step
    bisections: int  # after doubling, steps spent narrowing down cameras per box
    max_cameras: int  # cameras per box never tried beyond this
    batching_cameras: int
    largest_batch: int  # of the detector-only and GPU batch sizes
    memory_s: float  # each live patrol run for memory per camera


QUICK = Budget(rounds=3, compare_s=60.0, bare_inputs=40, street_s=20.0, warm_up_s=3.0, window_s=3.0, bisections=1, max_cameras=256,
               batching_cameras=16, largest_batch=8, memory_s=4.0)
FULL = Budget(rounds=5, compare_s=180.0, bare_inputs=120, street_s=60.0, warm_up_s=3.0, window_s=10.0, bisections=8, max_cameras=256,
              batching_cameras=24, largest_batch=32, memory_s=10.0)


@dataclass(frozen=True)
class Settings:
    quick: bool
    out: Path  # results: JSON and PNG
    work: Path  # rendered inputs (kept between runs) and scratch
    model: Path = DEFAULT_MODEL
    threads: int | None = None  # ONNX Runtime intra-op threads, for our side and the bare session alike
    conf: float = 0.25
    ultralytics_python: str | None = None  # a Python with ultralytics; None: that contestant is not run
    budget: Budget | None = None  # default: QUICK or FULL after ``quick``
    layout: str | None = None  # cameras per box: only this layout (cameras.LAYOUTS; default: every one)

    def __post_init__(self) -> None:
        if self.budget is None:
            object.__setattr__(self, "budget", QUICK if self.quick else FULL)

    def scratch(self) -> tempfile.TemporaryDirectory:
        self.work.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=self.work, prefix="run-")


@dataclass(frozen=True)
class Video:
    key: str  # short name in tables and JSON
    label: str
    path: Path
    camera_file: Path  # the camera file whose zones and rules apply (``patrol replay --camera``)
    camera: CameraConfig  # that camera, its url pointing at ``path``
    width: int
    height: int
    fps: float
    frames: int
    street: str | None = None  # a synthetic street's kind: "busy" (traffic all along) or "static" (mostly still)
    main: Video | None = None  # a camera with detect_url: its main stream (url, only demuxed); this is the sub-stream

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def truth(self) -> Path | None:
        """The ground truth of a synthetic street (``patrol synth`` writes it beside the video)."""
        path = self.path.with_name(self.path.stem + ".gt.json")
        return path if path.is_file() else None

    def describe(self) -> dict:
        described = {"key": self.key, "label": self.label, "path": str(self.path), "size": [self.width, self.height],
                     "fps": round(self.fps, 3), "frames": self.frames, "analysis_fps": self.camera.analysis_fps}
        if self.street is not None:
            described["street"] = self.street
        if self.main is not None:
            described["main"] = self.main.describe()
        return described


def open_video(key: str, label: str, path: Path, camera_file: Path, **camera_changes) -> Video:
    if not path.is_file():
        raise FileNotFoundError(f"benchmark input {key}: {path} is missing")
    camera = load_camera(camera_file)
    # Throughput is measured per analysed frame, every sampled frame analysed (as ultralytics'
    # vid_stride analyses them): the adaptive rate would measure how still each video is instead.
    full_rate = camera.adaptive_rate.model_copy(update={"enabled": False})
    camera = camera.model_copy(update={"url": str(path), "adaptive_rate": full_rate, **camera_changes})
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = stream.frames or round(float(container.duration or 0) / 1e6 * fps)
        return Video(key, label, path, camera_file, camera, stream.width, stream.height, fps, frames)


def sample_street() -> Video:
    return open_video("sample", "sample street (synthetic 960x540, shipped)", SAMPLE_VIDEO, STREET_CAMERA)


def real_video() -> Video:
    return open_video("real", "car-detection (real 768x432, ../shared)", SHARED / "videos" / "car-detection.mp4",
                      CAR_LOT_CAMERA)


def street(settings: Settings, width: int, height: int, **camera_changes) -> Video:
    """The synthetic street at ``width`` x ``height`` (1920x1080 main stream, 640x360 sub-stream)."""
    duration = settings.budget.street_s
    path = _rendered(settings, f"street-{width}x{height}-{duration:g}s-seed{SYNTH_SEED}",
                     lambda: sample_scenario(seed=SYNTH_SEED, width=width, height=height, duration_s=duration))
    return replace(open_video(f"street-{height}p", f"synthetic street {width}x{height}", path, STREET_CAMERA,
                              **camera_changes), street="busy")


def quiet_street(settings: Settings, width: int | None = None, height: int | None = None,
                 duration: float | None = None) -> Video:
    """A mostly static street: the sample's timeline (parked cars, stall, bin) with one in eight
    passers-by, i.e. a side street or night hours, where motion gating is meant to pay.
    Default: 640x360 for 60 s in a quick run, else 960x540 for 150 s (the sample's whole timeline)."""
    width = width or (640 if settings.quick else 960)
    height = height or (360 if settings.quick else 540)
    duration = duration or (60.0 if settings.quick else 150.0)

    def scenario() -> Scenario:
        busy = sample_scenario(seed=SYNTH_SEED, width=width, height=height, duration_s=duration)
        passers_by = [a for a in busy.actors if len(a.path.keys) == 2 and a.path.keys[0][1] != a.path.keys[1][1]]
        kept = [a for a in busy.actors if a not in passers_by or passers_by.index(a) % 8 == 0]
        return replace(busy, actors=kept)

    path = _rendered(settings, f"quiet-street-{width}x{height}-{duration:g}s-seed{SYNTH_SEED}", scenario)
    return replace(open_video("quiet", f"quiet synthetic street {width}x{height}", path, STREET_CAMERA),
                   street="static")


def sub_main(settings: Settings, main: Video, width: int = 640, height: int = 360) -> Video:
    """A camera that names its sub-stream: ``main`` is its ``url`` (only demuxed into the clip ring,
    decoded around a case) and the same pictures re-encoded at ``width`` x ``height`` its
    ``detect_url`` (decoded and analysed), with motion gating on and the adaptive rate as a camera
    file has it when it says nothing (on). The returned video is the sub-stream, ``main`` beside it."""
    path = settings.work / "inputs" / f"{main.path.stem}-sub{width}x{height}.mp4"
    if not path.is_file():
        _downscaled(main.path, path, width, height)
    defaults = load_camera(main.camera_file)
    gating = defaults.motion_gating.model_copy(update={"enabled": True})
    sub = open_video(f"{main.key}-sub+main", f"{main.label}: its {width}x{height} sub-stream analysed, main recorded",
                     path, main.camera_file, url=str(main.path), detect_url=str(path),
                     adaptive_rate=defaults.adaptive_rate, motion_gating=gating)
    return replace(sub, street=main.street, main=main)


def _downscaled(source: Path, target: Path, width: int, height: int) -> None:
    """``source`` re-encoded at ``width`` x ``height`` frame for frame (the same frame times), as a
    camera's second encoder makes its sub-stream: H.264 without B-frames, a keyframe every 2 s."""
    partial = target.with_name(f".partial-{target.name}")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(partial), "w", format="mp4") as out:
        fps = src.streams.video[0].average_rate
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        keyframes = str(round(2 * fps))
        stream.options = {"preset": "veryfast", "g": keyframes, "keyint_min": keyframes, "sc_threshold": "0", "bf": "0"}
        for index, frame in enumerate(src.decode(video=0)):
            picture = frame.reformat(width=width, height=height, format="yuv420p")
            picture.pts, picture.time_base = index, 1 / fps
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    partial.replace(target)


def looped(settings: Settings, video: Video, times: int) -> Video:
    """``video`` played ``times`` over as one file (packets copied, timestamps shifted, no
    re-encoding): long enough that start-up does not weigh in the figures of a fast run."""
    if times <= 1:
        return video
    path = settings.work / "inputs" / f"{video.path.stem}-x{times}.mp4"
    if not path.is_file():
        partial = path.with_name(f".partial-{path.name}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(video.path)) as source, av.open(str(partial), "w", format="mp4") as target:
            stream = source.streams.video[0]
            out = target.add_stream_from_template(stream)
            packets = [packet for packet in source.demux(stream) if packet.size]
            span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
            for turn in range(times):
                for packet in packets:
                    packet.pts += span if turn else 0
                    packet.dts += span if turn else 0
                    packet.stream = out
                    target.mux(packet)
        partial.replace(path)
    return open_video(video.key, f"{video.label}, {times} times over", path, video.camera_file)


def rotated(settings: Settings, path: Path, start_s: float) -> Path:
    """``path`` played from its first keyframe at or after ``start_s`` to its end, then from its
    start (packets copied, timestamps shifted, no re-encoding): the same street from another moment
    of its timeline, for cameras out of step as real ones are."""
    if start_s <= 0:
        return path
    target = settings.work / "inputs" / f"{path.stem}-from{start_s:g}s.mp4"
    if not target.is_file():
        partial = target.with_name(f".partial-{target.name}")
        with av.open(str(path)) as source, av.open(str(partial), "w", format="mp4") as out:
            stream = source.streams.video[0]
            copy = out.add_stream_from_template(stream)
            packets = [packet for packet in source.demux(stream) if packet.size]
            cut = next(i for i, p in enumerate(packets) if p.is_keyframe and p.pts * stream.time_base >= start_s)
            origin = min(p.pts for p in packets)
            span = max(p.pts + (p.duration or 0) for p in packets) - origin
            first = packets[cut].pts - origin
            for part, by in ((packets[cut:], -first), (packets[:cut], span - first)):
                for packet in part:
                    packet.pts += by
                    packet.dts += by
                    packet.stream = copy
                    out.mux(packet)
        partial.replace(target)
    return target


def _rendered(settings: Settings, name: str, scenario) -> Path:
    """``work/inputs/<name>.mp4``, rendered (with its ground truth) the first time it is asked for."""
    folder = settings.work / "inputs"
    video = folder / f"{name}.mp4"
    if video.is_file():
        return video
    partial = folder / f".partial-{name}"
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    print(f"bench: rendering {video.name} once (kept in {folder})", flush=True)
    render_video(scenario(), partial / video.name, seed=SYNTH_SEED, progress=False)
    for file in sorted(partial.iterdir(), key=lambda f: f.suffix == ".mp4"):  # the video last: it marks completion
        file.replace(folder / file.name)
    partial.rmdir()
    print(f"bench: rendered {video.name} in {time.monotonic() - started:.0f}s", flush=True)
    return video


def analysed_frames(video: Video, limit: int) -> tuple[list[np.ndarray], int]:
    """Up to ``limit`` of the frames a replay analyses, spread over the video (kept in memory), and
    how many frames a replay analyses in all."""
    from pipeline.ingest import decode

    step = max(1, round(video.duration_s * video.camera.analysis_fps) // limit)
    kept, total = [], 0
    for frame in decode(str(video.path), camera_id=video.camera.id, analysis_fps=video.camera.analysis_fps):
        if total % step == 0 and len(kept) < limit:
            kept.append(frame.image)
        total += 1
    return kept, total


@dataclass
class ReplayResult:
    summary: ReplaySummary
    cases: list[dict]


def replay_video(video: Video, detector: Detector, settings: Settings, camera: CameraConfig | None = None
                 ) -> ReplayResult:
    """``patrol replay`` in this process, into throw-away embedded backends."""
    camera = camera or video.camera
    with settings.scratch() as scratch:
        out = Path(scratch)
        workspace = Workspace(out)
        cases = embedded_cases(workspace, {"name": detector.card.name, "sha256": detector.card.sha256})
        try:
            summary = replay(str(video.path), camera, detector, cases, cases_path=out / "cases.jsonl",
                             evidence_root=workspace.evidence, start_wall=REPLAY_START_WALL)
        finally:
            cases.filer.close(drain_timeout_s=30)
        cases = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    return ReplayResult(summary, cases)


def expected_cases(video: Video) -> list[tuple[str, str, float]]:
    """(kind, zone, confirmation time) of each ground-truth episode long enough to be a case before
    the video ends."""
    truth = json.loads(video.truth.read_text())
    dwell = {(zone.id, rule.type): rule.dwell_s for zone in video.camera.zones for rule in zone.rules}
    expected = []
    for episode in truth["episodes"]:
        needed = dwell.get((episode["zone_id"], episode["kind"]))
        confirm_s = episode["start_s"] + (needed or 0.0)
        lasts = min(episode["end_s"], truth["duration_s"]) - episode["start_s"]
        if needed is not None and lasts >= needed and confirm_s < truth["duration_s"]:
            expected.append((episode["kind"], episode["zone_id"], confirm_s))
    return expected


def found_episodes(cases: list[dict], expected: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """The expected episodes a case was filed for (each case counts for one episode at most)."""
    unmatched = list(cases)
    found = []
    for kind, zone, confirm_s in expected:
        hit = next((c for c in unmatched if c["violation"] == kind and c["zone_id"] == zone
                    and abs(c["confirmed_s"] - confirm_s) <= TRUTH_TOLERANCE_S), None)
        if hit is not None:
            unmatched.remove(hit)
            found.append((kind, zone, confirm_s))
    return found


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def rss_mb() -> float:
    """This process's resident memory now (psutil is no dependency: /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> dict:
    """What the figures came from: CPU, cores, memory, load while running, library versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    memory_kb = next((int(line.split()[1]) for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()], "platform": platform.platform(),
        "python": platform.python_version(), "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(), "pyav": av.__version__, "opencv": cv2.__version__,
        "patrol": pipeline.__version__,
    }


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write_result(settings: Settings, name: str, result: dict) -> Path:
    """``<out>/<name>.json``, with the machine and the settings it was measured with."""
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / f"{name}.json"
    document = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                "settings": json.loads(json.dumps(asdict(settings), default=str)), **result}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def run_child(command: list[str], env: dict[str, str] | None = None, timeout_s: float = 900) -> tuple[str, float]:
    """(stdout, peak resident memory in MiB) of a child process that must succeed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO, env={**os.environ, **(env or {})})
        timer = threading.Timer(timeout_s, lambda: os.kill(child.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)  # wait4: this child's own peak memory
        finally:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} … failed ({child.returncode}):\n{stderr[-3000:]}")
    return stdout, usage.ru_maxrss / 1024
