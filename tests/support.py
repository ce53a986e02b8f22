"""What the test modules share: the repo's paths, the sample street's ground truth, the test camera,
the `patrol` command, waiting for a condition, free ports, unusable SQLite files, and short cuts of the sample.

Tests import from here (``from support import ...``); ``conftest.py`` re-exports the paths for the
modules that import them from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest
import yaml
from filelock import FileLock

from pipeline.types import Detections

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_VIDEO = REPO / "streams" / "samples" / "sample-street.mp4"
SAMPLE_CAMERA = REPO / "streams" / "sample-street.yaml"
DEFAULT_MODEL = REPO / "models" / "patrol-street-int8.onnx"
CAR_VIDEO = SHARED / "videos" / "car-detection.mp4"

# The `patrol` command of the interpreter running the tests, whatever virtualenv that is.
PATROL = (sys.executable, "-m", "pipeline.cli.main")

# The replays' first frame on a fixed clock (the camera's local time, UTC+8), so their case ids agree.
START_TIME = "2026-03-02T08:00:00"
START = datetime.fromisoformat(START_TIME).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
TOLERANCE_S = 3.0  # detection and tracking latency allowed on a case's confirmation time
# The sample's first 84 s (``short_street``): the first parked car (a case at 30 s), the stall
# (45 s) and the overflowing bin (75 s), each filed 4 s later; the third car has stood only 4 s.
SHORT_STREET_S = 84.0


# ---- tiers ----


def heavy_fixture(**options):
    """``pytest.fixture(**options)`` for a fixture that runs the network over a whole video or trains
    a model: every test using it, directly or through another fixture, is marked ``heavy`` (conftest)."""
    def define(function):
        function.heavy = True
        return pytest.fixture(**options)(function)

    return define


# ---- waiting, ports ----


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, *, every_s: float = 0.05,
             detail: Callable[[], str] | None = None) -> float:
    """Polls ``condition`` every ``every_s`` until it holds; the seconds that took. Fails the test
    naming ``what`` (and ``detail()``, when given) if it does not hold within ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s:g}s: {what}" + (f"; {detail()}" if detail else ""))
        time.sleep(every_s)
    return time.monotonic() - started


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unusable_sqlite_file(path: Path, damage: str) -> Path:
    """A file SQLite refuses as soon as it is opened: ``"garbage"``, bytes that are no database at
    all, or ``"malformed"``, a real database whose schema page is overwritten past its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        path.write_bytes(random.Random(0).randbytes(8192))
        return path
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * 3996
    path.write_bytes(data)
    return path


# ---- the sample street's ground truth ----


def truth_of(video: Path = SAMPLE_VIDEO) -> dict:
    """A rendered street's ground truth (``<stem>.gt.json`` beside it): size, length, episodes."""
    return json.loads(video.with_name(video.stem + ".gt.json").read_text(encoding="utf-8"))


def expected_cases(camera, video: Path = SAMPLE_VIDEO) -> list[tuple[str, str, float]]:
    """(kind, zone, confirmation time) of every ground-truth episode of ``video`` that lasts as
    long as ``camera``'s rule for it asks: the cases a run over the video must file."""
    dwell = {(zone.id, rule.type): rule.dwell_s for zone in camera.zones for rule in zone.rules}
    return [(e["kind"], e["zone_id"], e["start_s"] + dwell[(e["zone_id"], e["kind"])])
            for e in truth_of(video)["episodes"] if e["end_s"] - e["start_s"] >= dwell[(e["zone_id"], e["kind"])]]


def cases_per_camera(camera_ids: Iterable[str], expected: list[tuple[str, str, float]]) -> Counter:
    """(camera, kind) -> cases, when every camera in ``camera_ids`` shows the same street."""
    kinds = Counter(kind for kind, _, _ in expected)
    return Counter({(camera_id, kind): n for camera_id in camera_ids for kind, n in kinds.items()})


def match(cases: list[dict], expected: list[tuple[str, str, float]]) -> tuple[list, list, list]:
    """(matched pairs, missing episodes, extra cases); one case may match one episode only."""
    unmatched = list(cases)
    matched, missing = [], []
    for kind, zone, confirm_s in expected:
        hit = next((c for c in unmatched if c["violation"] == kind and c["zone_id"] == zone
                    and abs(c["confirmed_s"] - confirm_s) <= TOLERANCE_S), None)
        if hit is None:
            missing.append((kind, zone, confirm_s))
        else:
            unmatched.remove(hit)
            matched.append(((kind, zone, confirm_s), hit))
    return matched, missing, unmatched


# ---- the test camera ----


def sample_camera(*, dwell_s: float | None = None, **updates):
    """The sample street's camera (streams/sample-street.yaml), with ``updates`` to its fields
    (``ingest`` as a dict of the settings to change) and every rule's dwell set to ``dwell_s``."""
    from pipeline.config import load_camera

    camera = load_camera(SAMPLE_CAMERA)
    if "ingest" in updates and isinstance(updates["ingest"], dict):
        updates["ingest"] = camera.ingest.model_copy(update=updates["ingest"])
    if dwell_s is not None:
        updates["zones"] = [zone.model_copy(update={"rules": [rule.model_copy(update={"dwell_s": dwell_s})
                                                              for rule in zone.rules]})
                            for zone in camera.zones]
    return camera.model_copy(update=updates)


def camera_file(path: Path, *, dwell_s: float | None = None, **fields) -> Path:
    """The sample street's camera file written to ``path`` with ``fields`` replaced (``url``
    made absolute unless given) and every rule's dwell set to ``dwell_s``."""
    doc = yaml.safe_load(SAMPLE_CAMERA.read_text(encoding="utf-8"))
    doc["url"] = str(SAMPLE_CAMERA.parent / doc["url"])
    if dwell_s is not None:
        for zone in doc["zones"]:
            for rule in zone["rules"]:
                rule["dwell_s"] = dwell_s
    doc.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# ---- short cuts of the sample ----


def cut_video(src: Path, dst: Path, *, seconds: float | None = None, start_s: float = 0.0) -> Path:
    """``src`` (or its first ``seconds``; from its keyframe at or after ``start_s``, which becomes
    0) as an MP4 with its index at the front ("faststart"), packets copied, so cutting the file
    short keeps the index and loses only the end. When ``src`` has ground truth, ``dst`` gets it
    too, its episodes moved and ended with the video."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mp4",
                                              options={"movflags": "+faststart"}) as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        shift, offset_s = None, 0.0  # stream ticks and seconds cut off the front
        for packet in source.demux(stream):
            if packet.dts is None or (seconds is not None and packet.dts * stream.time_base >= seconds):
                continue
            if shift is None:
                if not (packet.is_keyframe and packet.pts * stream.time_base >= start_s):
                    continue
                shift, offset_s = (packet.dts, float(packet.pts * stream.time_base)) if start_s else (0, 0.0)
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = target
            out.mux(packet)
    if src.with_name(src.stem + ".gt.json").is_file():
        truth = truth_of(src)
        end_s = min(truth["duration_s"], seconds or truth["duration_s"]) - offset_s
        truth["frames"] = round(end_s * truth["fps"])
        truth["duration_s"] = end_s
        moved = [{**e, "start_s": max(0.0, e["start_s"] - offset_s), "end_s": min(e["end_s"] - offset_s, end_s)}
                 for e in truth["episodes"]]
        truth["episodes"] = [e for e in moved if e["end_s"] > e["start_s"]]
        truth["video"] = dst.name
        dst.with_name(dst.stem + ".gt.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n",
                                                        encoding="utf-8")
    return dst


def short_street(folder: Path) -> Path:
    """The sample's first :data:`SHORT_STREET_S` seconds, with their ground truth, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return cut_video(SAMPLE_VIDEO, folder / "short-street.mp4", seconds=SHORT_STREET_S)


def garble(src: Path, dst: Path, *, at_s: float, length: int = 20_000) -> tuple[float, float]:
    """Copies ``src`` with random bytes over ``length`` bytes starting at the packet shown at
    ``at_s``; returns the stream-time span [first damaged picture, next intact keyframe)."""
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        packets = [(p.pos, p.size, float((p.pts - start) * stream.time_base), p.is_keyframe)
                   for p in container.demux(stream) if p.size]
    pos = next(pos for pos, _, pts, _ in sorted(packets, key=lambda p: p[2]) if pts >= at_s)
    damaged = [pts for p, size, pts, _ in packets if p + size > pos and p < pos + length]
    resumes = min(pts for p, _, pts, key in packets if key and p >= pos + length)
    data = bytearray(src.read_bytes())
    data[pos:pos + length] = random.Random(1).randbytes(length)
    dst.write_bytes(bytes(data))
    return min(damaged), resumes


# ---- replays ----


class RememberingDetector:
    """The real detector, remembering what it found in each frame it has seen (by the frame's bytes).

    ONNX Runtime on the CPU gives the same boxes for the same pixels, so a test that replays the
    sample again, to check what the patrol does with the boxes (tracking, rules, filing, the queue),
    gets exactly what the model would say without waiting for it twice. With ``folder`` the boxes are
    also kept on disk (one file a frame, under the model's sha256 and thresholds), for the other
    processes of the same test run: the session's replay of the sample pays for the model once, a
    replay of it or of a cut of it in any process after that does not. Tests of the model itself
    use a plain ``Detector``. With ``pace_s`` a remembered frame still takes that long, asleep, as
    the network would take: a test that injects a fault between two cases keeps its replay's pace,
    without the CPU."""

    def __init__(self, detector, folder: Path | None = None, *, pace_s: float = 0.0) -> None:
        self.detector = detector
        self.pace_s = pace_s
        self._seen: dict[tuple, Detections] = {}
        self._folder = None if folder is None else (
            folder / f"{detector.card.sha256[:16]}-conf{detector.conf_threshold:g}-iou{detector.iou_threshold:g}")

    def __getattr__(self, name: str):
        return getattr(self.detector, name)

    def detect(self, images):
        keys = [(image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()) for image in images]
        unseen = [i for i, key in enumerate(keys) if key not in self._seen and not self._recalled(key)]
        if unseen:
            for i, found in zip(unseen, self.detector.detect([images[i] for i in unseen]), strict=True):
                self._seen[keys[i]] = found
                self._keep(keys[i], found)
        if self.pace_s:
            time.sleep(self.pace_s * (len(images) - len(unseen)))
        # copies: what the patrol does with one replay's boxes must not reach the next replay's
        return [replace(found, xyxy=found.xyxy.copy(), score=found.score.copy(), class_id=found.class_id.copy(),
                        role=found.role.copy()) for found in map(self._seen.__getitem__, keys)]

    def _file(self, key: tuple) -> Path:
        shape, digest = key
        # the network's input size for this frame size too: a detector made with another input_size differs
        width, height = self.detector.input_size_for((shape[1], shape[0]))
        return self._folder / f"{'x'.join(map(str, shape))}-in{width}x{height}-{digest}.npz"

    def _recalled(self, key: tuple) -> bool:
        if self._folder is None or not (path := self._file(key)).is_file():
            return False
        with np.load(path) as kept:
            self._seen[key] = Detections(kept["xyxy"], kept["score"], kept["class_id"], kept["role"])
        return True

    def _keep(self, key: tuple, found: Detections) -> None:
        if self._folder is None:
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._file(key)
        partial = path.with_name(f".{os.getpid()}-{path.name}")  # another process may write the same frame
        with partial.open("wb") as file:
            np.savez(file, xyxy=found.xyxy, score=found.score, class_id=found.class_id, role=found.role)
        partial.replace(path)


@dataclass(frozen=True)
class Replay:
    out: Path  # cases.jsonl, evidence/ and queue/ of the run
    cases: list[dict]  # cases.jsonl, in filing order

    @classmethod
    def read(cls, out: Path) -> Replay:
        return cls(out, [json.loads(line) for line in (out / "cases.jsonl").read_text(encoding="utf-8").splitlines()])


_whole_sample: dict[Path, Replay] = {}


def run_base(tmp_path_factory) -> Path:
    """The folder every process of this test run shares: the session's own base temp, or under
    pytest-xdist (``make test -j``'s workers) the folder above the workers' base temps."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


_detectors: list[RememberingDetector] = []


def shared_detector(tmp_path_factory) -> RememberingDetector:
    """The project's model, loaded once in this process (the ``detector`` fixture), remembering the
    boxes of every frame any process of this test run has shown a detector made here."""
    if not _detectors:
        from pipeline.detect import Detector

        _detectors.append(RememberingDetector(Detector(DEFAULT_MODEL), remembered_detections(tmp_path_factory)))
    return _detectors[0]


def remembered_detections(tmp_path_factory) -> Path:
    """Where every process of this test run keeps the boxes its ``RememberingDetector`` has seen."""
    return run_base(tmp_path_factory) / "detections"


def remembering_detectors(folder: Path, *, pace_s: float = 0.0) -> Callable:
    """A stand-in for ``Detector`` (patched into ``pipeline.engine.compose``, where the CLI makes its
    detectors) that makes the real one, remembering its boxes in ``folder``."""
    from pipeline.detect import Detector

    def make(*args, **kwargs) -> RememberingDetector:
        return RememberingDetector(Detector(*args, **kwargs), folder, pace_s=pace_s)

    return make


# About what the network takes a frame on one core here: a remembered frame's pace where a test times faults.
NETWORK_PACE_S = 0.025


def remembering_patrol(tmp_path_factory, *, pace_s: float = 0.0) -> tuple[str, ...]:
    """The `patrol` command (as :data:`PATROL`) with its detector remembering boxes in this test
    run's folder, a remembered frame taking ``pace_s``: ``tests/remembering_patrol.py``."""
    return (sys.executable, str(REPO / "tests" / "remembering_patrol.py"), str(remembered_detections(tmp_path_factory)),
            f"{pace_s:g}")


def sample_replay_once(tmp_path_factory) -> Replay:
    """The whole sample street replayed (``replay_sample``: embedded queue and evidence folder, first
    frame at :data:`START_TIME`) once per test run: the first process to get here makes it under a
    file lock, the others wait and read it. Its boxes stay on disk, so a later replay of the sample
    or of a cut of it, in any process, runs no inference. For tests that only read what it filed;
    copy it to change it."""
    base = run_base(tmp_path_factory)
    if base not in _whole_sample:
        out = base / "sample-replay"
        with FileLock(str(base / "sample-replay.lock")):
            complete = base / "sample-replay.complete"  # a run that died halfway is made again
            if not complete.is_file():
                shutil.rmtree(out, ignore_errors=True)
                # on two threads, while the other processes wait for it; its boxes then serve every replay after
                from pipeline.detect import Detector

                on_two_threads = Detector(DEFAULT_MODEL, intra_op_threads=2)
                replay_sample(out, RememberingDetector(on_two_threads, remembered_detections(tmp_path_factory)))
                complete.touch()
        _whole_sample[base] = Replay.read(out)
    return _whole_sample[base]


def replay_sample(out: Path, detector, *, camera=None, video: Path = SAMPLE_VIDEO, start_wall: float = START) -> Replay:
    """The patrol over ``video`` (default: the whole sample street) in this process, as fast as it
    goes, into ``out`` (embedded queue and evidence folder), its first frame at ``start_wall``."""
    from pipeline.config import Workspace, load_camera
    from pipeline.engine import embedded_cases, replay

    camera = camera or load_camera(SAMPLE_CAMERA)
    cases = embedded_cases(Workspace(out), {"name": "patrol-street", "sha256": "0" * 64})
    try:
        replay(str(video), camera, detector, cases, cases_path=out / "cases.jsonl",
               evidence_root=Workspace(out).evidence, start_wall=start_wall)
    finally:
        assert cases.filer.close(drain_timeout_s=30) == 0
    return Replay.read(out)
