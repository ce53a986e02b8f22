"""Propose vehicle boxes on a fixed camera's video over an empty, plain floor, for a person to check.

    python annotations/tools/static_camera_labels.py ../shared/videos/car-detection.mp4 \
        --out annotations/eval/car-detection-road.labels.json --sheets var/label

The background is the per-pixel median of every frame (the lot is empty most of the time). A
vehicle is what is *brighter* than that background in some channel after the frame's exposure is
matched to it, so its own shadow is left out of its box; blobs are closed and opened, and each of
at least ``--min-area`` pixels is one box. This suits the shared top-down parking-lot video (light
cars over dark asphalt); a dark car over dark ground would be missed, which is why every proposal is
drawn on contact sheets and looked at before the labels are used. No library labels this way (a
background subtractor such as OpenCV's MOG2 learns online and absorbs a car that stops).

Frames are taken every ``--step`` frames where something is there, and every ``--empty-step`` where
nothing is (empty frames count the false positives of a detector).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np

BRIGHTER_BY = 45  # grey levels above the background, in the brightest-changing channel
MIN_AREA_PX = 1500


def decode(video: Path) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def propose(frame: np.ndarray, background: np.ndarray, *, min_area: int = MIN_AREA_PX) -> list[list[int]]:
    """xyxy boxes of the bright blobs of ``frame`` over ``background`` (float32 BGR)."""
    image = frame.astype(np.float32) * (np.median(background) / max(float(np.median(frame)), 1.0))
    brighter = ((image - background).max(axis=2) > BRIGHTER_BY).astype(np.uint8)
    brighter = cv2.morphologyEx(brighter, cv2.MORPH_CLOSE, np.ones((21, 21), np.uint8))
    brighter = cv2.morphologyEx(brighter, cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(brighter)
    return [[int(x), int(y), int(x + w), int(y + h)] for x, y, w, h, area in stats[1:] if area >= min_area]


def contact_sheets(frames: list[np.ndarray], labels: dict[int, list[list[int]]], folder: Path) -> list[Path]:
    """Each labelled frame at half size with its boxes, eight to a PNG, to look at before use."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for index, boxes in labels.items():
        tile = frames[index].copy()
        for x1, y1, x2, y2 in boxes:
            cv2.rectangle(tile, (x1, y1), (x2, y2), (0, 0, 255), 2)
        cv2.putText(tile, f"frame {index}", (6, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 255), 2)
        tiles.append(cv2.resize(tile, (tile.shape[1] // 2, tile.shape[0] // 2)))
    sheets = []
    for start in range(0, len(tiles), 8):
        chunk = tiles[start:start + 8]
        chunk += [np.zeros_like(tiles[0])] * (8 - len(chunk))
        sheet = np.vstack([np.hstack(chunk[row * 2:row * 2 + 2]) for row in range(4)])
        sheets.append(folder / f"sheet-{start // 8:02d}.png")
        cv2.imwrite(str(sheets[-1]), sheet)
    return sheets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="labels JSON to write")
    parser.add_argument("--sheets", type=Path, default=Path("var/label"), help="folder for the contact sheets")
    parser.add_argument("--step", type=int, default=6, help="take every Nth frame with something in it")
    parser.add_argument("--empty-step", type=int, default=30, help="take every Nth frame with nothing in it")
    parser.add_argument("--min-area", type=int, default=MIN_AREA_PX)
    args = parser.parse_args(argv)

    frames = decode(args.video)
    background = np.median(np.stack(frames), axis=0).astype(np.float32)
    labels = {}
    for index, frame in enumerate(frames):
        boxes = propose(frame, background, min_area=args.min_area)
        if index % (args.step if boxes else args.empty_step) == 0:
            labels[index] = boxes
    document = {
        "video": args.video.name,
        "source": f"{args.video} (see ../shared/README.md for its licence); boxes proposed by "
                  f"annotations/tools/static_camera_labels.py and checked by eye on its contact sheets",
        "box_format": f"x1, y1, x2, y2 in pixels of the {frames[0].shape[1]}x{frames[0].shape[0]} frame; every "
                      f"vehicle with at least {args.min_area} px in view (a sliver at the edge is not labelled); frames "
                      "with no box show none",
        "class": "vehicle",
        "frames": {str(index): boxes for index, boxes in labels.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    sheets = contact_sheets(frames, labels, args.sheets)
    print(f"{args.out}: {len(labels)} frames, {sum(map(len, labels.values()))} boxes; check {len(sheets)} "
          f"sheets in {args.sheets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
