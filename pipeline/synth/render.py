"""Write scenarios out: an H.264 video with its ground truth, or a YOLO-format image set."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from pipeline.synth.actors import CLASSES
from pipeline.synth.paste import CutoutPool, paste
from pipeline.synth.scenario import Scenario, random_scene
from pipeline.synth.weather import add_weather


def render_video(scenario: Scenario, out: Path, *, seed: int = 0, crf: int = 28, progress: bool = True) -> dict:
    """Encode the scenario to ``out`` (MP4, H.264, a keyframe every 2 s) and write its ground truth.

    Ground truth: ``<out stem>.gt.json`` (size, fps, frame count, violation episodes) and
    ``<out stem>.boxes.jsonl.gz`` (one line per frame: pts and every visible labelled box).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_frames = int(round(scenario.duration_s * scenario.fps))
    rate = Fraction(scenario.fps).limit_denominator(1000)
    boxes_path = out.with_name(out.stem + ".boxes.jsonl.gz")
    with av.open(str(out), "w") as container, gzip.open(boxes_path, "wt") as boxes_file:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = scenario.width, scenario.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "g": str(int(2 * scenario.fps)),
                          "keyint_min": str(int(2 * scenario.fps)), "sc_threshold": "0"}
        for i in tqdm(range(n_frames), desc=f"render {out.name}", disable=not progress, unit="frame"):
            t = i / scenario.fps
            img, labels = scenario.render(t, rng)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
            boxes_file.write(json.dumps({"frame": i, "pts_s": round(t, 4),
                                         "boxes": [[c, *(round(v, 1) for v in b)] for c, b in labels]}) + "\n")
        for packet in stream.encode():
            container.mux(packet)
    truth = {
        "video": out.name,
        "width": scenario.width,
        "height": scenario.height,
        "fps": scenario.fps,
        "frames": n_frames,
        "duration_s": scenario.duration_s,
        "classes": list(CLASSES),
        "episodes": [
            {"kind": e.kind, "zone_id": e.zone_id, "class": e.cls, "start_s": e.start_s, "end_s": e.end_s,
             "box": [round(v, 1) for v in e.box]}
            for e in scenario.episodes
        ],
    }
    out.with_name(out.stem + ".gt.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
    return truth


def render_dataset(out_dir: Path, count: int, *, seed: int = 0, val_fraction: float = 0.15,
                   sizes: tuple[tuple[int, int], ...] = ((640, 360), (960, 540), (800, 450), (640, 480)),
                   weather: bool = False, pools: Sequence[CutoutPool] = (), progress: bool = True) -> Path:
    """Random street scenes as a YOLO detection set (images/, labels/, data.yaml); returns data.yaml.

    ``weather`` adds rain and glare to some scenes; ``pools`` paste real cut-outs into each scene
    (training sets only: see pipeline.synth.paste)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        (out_dir / split / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / split / "labels").mkdir(parents=True, exist_ok=True)
    n_val = int(round(count * val_fraction))
    for i in tqdm(range(count), desc="synthetic scenes", disable=not progress, unit="img"):
        width, height = sizes[rng.integers(len(sizes))]
        scene = random_scene(rng, width, height)
        img, labels = scene.render(0.0, rng)
        pasted = [cutout for pool in pools for cutout in pool.draw(rng)]
        if pasted:
            img, labels = paste(img, labels, scene, pasted, rng)
        if weather:
            img = add_weather(img, rng)
        if rng.random() < 0.3:  # motion blur, as from a slow shutter at dusk
            k = int(rng.integers(3, 9))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            img = cv2.filter2D(img, -1, kernel)
        split = "val" if i < n_val else "train"
        name = f"synth_{seed}_{i:05d}"
        quality = int(rng.integers(35, 90))  # compression artefacts like a camera's stream
        cv2.imwrite(str(out_dir / split / "images" / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        lines = []
        for cls, (x1, y1, x2, y2) in labels:
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            lines.append(f"{CLASSES.index(cls)} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        (out_dir / split / "labels" / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(
        f"path: {out_dir.resolve()}\ntrain: train/images\nval: val/images\n"
        f"names:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES))
    )
    return data_yaml
