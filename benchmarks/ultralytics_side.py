"""The ultralytics side of `patrol bench compare`: run in a Python that has ultralytics (the `train`
extra), never imported by the patrol itself.

    python benchmarks/ultralytics_side.py --model M.onnx --video V.mp4 --imgsz 320 --conf 0.25 --vid-stride 3

Runs ``YOLO(model).track(source=video, stream=True, tracker='bytetrack.yaml')`` over the video, the
way a user of ultralytics would run the same ONNX model with its own tracker, and prints one JSON
line: frames analysed, seconds, the network's input shape and ultralytics' own per-frame timings.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--conf", type=float, required=True)
    parser.add_argument("--vid-stride", type=int, required=True)
    parser.add_argument("--tracker", default="bytetrack.yaml")
    args = parser.parse_args()

    import ultralytics
    from ultralytics import YOLO

    model = YOLO(args.model, task="detect")
    options = {"imgsz": args.imgsz, "conf": args.conf, "tracker": args.tracker, "verbose": False}
    capture = cv2.VideoCapture(args.video)
    ok, first = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read {args.video}")
    # Warm-up on one frame: loads the ONNX session and the tracker, as our side's Detector is
    # loaded before its replay starts; the timed run below reuses both.
    model.track(source=first, **options)
    shapes: list[tuple] = []
    preprocess = model.predictor.preprocess

    def recording_preprocess(images):
        tensor = preprocess(images)
        if not shapes:
            shapes.append(tuple(tensor.shape))
        return tensor

    model.predictor.preprocess = recording_preprocess
    frames, speeds = 0, {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    started = time.perf_counter()
    for result in model.track(source=args.video, stream=True, vid_stride=args.vid_stride, **options):
        frames += 1
        for key in speeds:
            speeds[key] += result.speed.get(key) or 0.0
    seconds = time.perf_counter() - started
    print(json.dumps({
        "frames_analysed": frames, "seconds": seconds, "analysed_fps": frames / seconds,
        "input_shape": list(shapes[0]) if shapes else None,
        "ms_per_frame": {key: value / frames for key, value in speeds.items()} if frames else {},
        "ultralytics": ultralytics.__version__, "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
