"""The parking-lot-cam frames put back together as a video, with parking episodes derived from their labels.

The set (../shared/datasets/parking-lot-cam) holds frames of one fixed camera's video, named by
frame index (``parking_lot_1_mp4-<N>_jpg.rf.<hash>.jpg``). Each train frame is there twice: as
taken and augmented (flipped, cropped, rotated, sheared, sometimes grey); valid frames are as
taken. The copy as taken is the one that lines up with the fixed camera: among the copies of a
frame index, the one of the valid frames' size whose pixels differ least from the per-pixel
median of the valid frames. (The augmented copies are cropped to other sizes or moved, so they
differ by far more than the lighting changes of the untouched ones.)

The kept frames are written one per second in frame-index order ("ordinal seconds": the set keeps
109 of the video's ~300 frames, unevenly spaced, so the video's own timing is lost; dwell times on
this camera are in these ordinal seconds).

Ground truth: each frame's ``occupied`` polygons, as boxes, are linked frame to frame by IoU >= 0.5
(a parked car does not move, so the same space keeps its box); a chain whose box's bottom-centre
lies in a zone (in most of its frames) is one parking episode of that zone, from the chain's first
frame to one frame after its last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import CameraConfig
from pipeline.rules.boxes import box_iou
from pipeline.rules.zone_mask import ZoneMask
from pipeline.train.events import TruthEpisode
from pipeline.train.sources import Source

FRAME_INDEX = re.compile(r"_mp4-(\d+)_jpg")
FPS = 1  # one kept frame per second of video
SAME_SPACE_IOU = 0.5
OCCUPIED = 1  # class id of `occupied` in the set's data.yaml


@dataclass(frozen=True)
class TakenFrame:
    index: int  # frame index in the source video
    path: Path
    difference: float  # mean absolute grey difference from the valid frames' median


def frames_as_taken(root: Path) -> list[TakenFrame]:
    """One frame per frame index, the copy as taken, in frame-index order."""
    valid = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((root / "valid" / "images").glob("*.jpg"))]
    size = max({v.shape for v in valid}, key=[v.shape for v in valid].count)
    reference = np.median(np.stack([v for v in valid if v.shape == size]), axis=0).astype(np.float32)
    best: dict[int, TakenFrame] = {}
    for path in sorted(root.glob("*/images/*.jpg")):
        found = FRAME_INDEX.search(path.name)
        if found is None:
            continue
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey.shape != size:  # cropped, rotated or sheared into another size: augmented
            continue
        candidate = TakenFrame(int(found.group(1)), path, float(np.abs(grey.astype(np.float32) - reference).mean()))
        if candidate.index not in best or candidate.difference < best[candidate.index].difference:
            best[candidate.index] = candidate
    return [best[index] for index in sorted(best)]


def write_video(frames: list[TakenFrame], out: Path, *, crf: int = 23) -> Path:
    """H.264 MP4, one frame per second, every frame a keyframe (clips can start anywhere)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    first = cv2.imread(str(frames[0].path))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "g": "1"}
        for pts, frame in enumerate(tqdm(frames, desc=f"assemble {out.name}", unit="frame", leave=False)):
            picture = av.VideoFrame.from_ndarray(cv2.imread(str(frame.path)), format="bgr24")
            picture.pts = pts
            picture.time_base = Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def occupied_boxes(source: Source, frame: TakenFrame, size: tuple[int, int]) -> np.ndarray:
    """(N, 4) xyxy pixel boxes of the frame's occupied spaces."""
    width, height = size
    rows = [[float(v) for v in line.split()[1:]] for line in source.label_lines(frame.path)]
    boxes = np.array(rows, np.float64).reshape(-1, 4)
    cx, cy, w, h = boxes[:, 0] * width, boxes[:, 1] * height, boxes[:, 2] * width, boxes[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def parking_truth(source: Source, frames: list[TakenFrame], camera: CameraConfig) -> list[TruthEpisode]:
    """Parking episodes per zone with an illegal_parking rule (times in the assembled video's seconds)."""
    height, width = cv2.imread(str(frames[0].path)).shape[:2]
    chains: list[list[tuple[int, np.ndarray]]] = []  # (ordinal, box) of one parked car
    open_chains: list[int] = []
    for ordinal, frame in enumerate(frames):
        boxes = occupied_boxes(source, frame, (width, height))
        still_open = []
        taken = set()
        if open_chains and len(boxes):
            last = np.stack([chains[c][-1][1] for c in open_chains])
            iou = box_iou(last, boxes)
            for row, col in sorted(np.argwhere(iou >= SAME_SPACE_IOU).tolist(), key=lambda rc: -iou[rc[0], rc[1]]):
                chain = open_chains[row]
                if chain in still_open or col in taken:
                    continue
                chains[chain].append((ordinal, boxes[col]))
                still_open.append(chain)
                taken.add(col)
        for col in range(len(boxes)):
            if col not in taken:
                chains.append([(ordinal, boxes[col])])
                still_open.append(len(chains) - 1)
        open_chains = still_open
    episodes = []
    for zone in camera.zones:
        if not any(rule.type == "illegal_parking" for rule in zone.rules):
            continue
        mask = ZoneMask(zone)
        for chain in chains:
            inside = mask.bottom_centres_inside(np.stack([box for _, box in chain]), (width, height))
            if inside.mean() >= 0.5:  # a parked car's box jitters a little across a zone edge
                (start, box), (end, _) = chain[0], chain[-1]
                episodes.append(TruthEpisode("illegal_parking", zone.id, start / FPS, (end + 1) / FPS,
                                             tuple(float(v) for v in box)))
    return sorted(episodes, key=lambda e: (e.zone_id, e.start_s, e.box))
