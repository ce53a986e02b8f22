"""Draw hand-made photo labels on contact sheets, to check them by eye.

    python annotations/tools/photo_labels.py annotations/eval/street-garbage-amsterdam.labels.json var/sheets

The labels file names its photos' folder under ``photos`` (relative to the repository) and gives,
per file name, ``[class, x1, y1, x2, y2]`` boxes in 0-1 image coordinates (pipeline/train/evaluate.py:
evaluate_photo_labels reads the same file). Sheets hold 12 photos each, numbered in file-name order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
COLOURS = {"garbage_pile": (255, 0, 255), "bin": (255, 128, 0), "overflowing_bin": (0, 0, 255)}
TILE = (400, 300)


def tile(photo: Path, boxes: list, number: int) -> np.ndarray:
    image = cv2.imread(str(photo))
    if image is None:
        raise SystemExit(f"{photo}: not an image")
    height, width = image.shape[:2]
    for name, x1, y1, x2, y2 in boxes:
        cv2.rectangle(image, (int(x1 * width), int(y1 * height)), (int(x2 * width), int(y2 * height)),
                      COLOURS.get(name, (255, 255, 255)), max(2, width // 200))
    scale = min(TILE[0] / width, TILE[1] / height)
    small = cv2.resize(image, (int(width * scale), int(height * scale)))
    canvas = np.zeros((TILE[1], TILE[0], 3), np.uint8)
    canvas[:small.shape[0], :small.shape[1]] = small
    cv2.putText(canvas, str(number), (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 255), 2)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    doc = json.loads(args.labels.read_text(encoding="utf-8"))
    folder = REPO / doc["photos"]
    tiles = [tile(folder / name, boxes, n) for n, (name, boxes) in enumerate(sorted(doc["images"].items()))]
    args.out.mkdir(parents=True, exist_ok=True)
    for sheet, start in enumerate(range(0, len(tiles), 12)):
        part = tiles[start:start + 12] + [np.zeros_like(tiles[0])] * (12 - len(tiles[start:start + 12]))
        path = args.out / f"{args.labels.stem}-{sheet}.png"
        cv2.imwrite(str(path), np.vstack([np.hstack(part[row:row + 4]) for row in range(0, 12, 4)]))
        print(path)


if __name__ == "__main__":
    main()
