"""Real objects pasted into a synthetic street: drawn scenes with real textures in them.

A ``Cutout`` is an object cut from a real labelled photo (pipeline.train.cutouts makes them from
the shared sets' training images). ``paste`` stands it where its class belongs in the street
(vehicles in the lanes, stalls and garbage on the sidewalks), sized by the scene's perspective and
lit like the scene, and relabels: the pasted object gets its box, objects it hides lose theirs.
Training only: nothing with a pasted cut-out is ever written where the repo ships files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.synth.actors import BASE_SIZES
from pipeline.synth.scenario import Scenario

Box = tuple[float, float, float, float]
HIDDEN = 0.6  # a drawn object whose box is covered more than this by a pasted one is unlabelled
VISIBLE = 0.4  # a pasted object must show at least this share of its width, as in Scenario.render

# Where each class stands (rows as fractions of the frame height, from the layout) and its size at
# perspective scale 1 in a 960-wide frame: a width for vehicles, a height for the rest.
PLACES = {
    "vehicle": (("lane_a", "lane_b", "kerb_lane"), ("width", BASE_SIZES["car"][0])),
    "stall": (("north_walk_bottom", "south_walk"), ("height", BASE_SIZES["stall"][1])),
    "garbage_pile": (("north_walk_bottom", "south_walk"), ("height", BASE_SIZES["garbage_pile"][1])),
}


@dataclass(frozen=True)
class Cutout:
    cls: str  # a project class with a place in PLACES
    image: np.ndarray  # BGR crop
    mask: np.ndarray  # uint8, 255 inside the object, same height and width as image


@dataclass(frozen=True)
class CutoutPool:
    """The cut-outs of one real source, and how many of them a scene gets at most."""

    cutouts: tuple[Cutout, ...]
    most_per_scene: int

    def draw(self, rng: np.random.Generator) -> list[Cutout]:
        count = int(rng.integers(0, self.most_per_scene + 1)) if self.cutouts else 0
        return [self.cutouts[int(i)] for i in rng.integers(0, len(self.cutouts), count)]


def paste(img: np.ndarray, labels: list[tuple[str, Box]], scene: Scenario, cutouts: Sequence[Cutout],
          rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, Box]]]:
    """``img`` (a render of ``scene``) with ``cutouts`` pasted in, and its labels updated."""
    height, width = img.shape[:2]
    out = img.copy()
    covered = np.zeros((height, width), np.uint8)
    pasted: list[tuple[str, Box]] = []
    gain, tint = scene.lighting
    light = np.array([gain * c for c in tint], np.float32)
    for cutout in cutouts:
        rows, (dimension, size) = PLACES[cutout.cls]
        row = rows[int(rng.integers(len(rows)))]
        y_bottom = (rng.uniform(0.93, 0.99) if row == "south_walk" else getattr(scene.layout, row)) * height
        scale = scene.layout.scale_at(height)(y_bottom) * width / 960.0 * rng.uniform(0.8, 1.2)
        crop_h, crop_w = cutout.mask.shape
        factor = size * scale / (crop_w if dimension == "width" else crop_h)
        new_w, new_h = max(2, round(crop_w * factor)), max(2, round(crop_h * factor))
        x1 = int(rng.uniform(-0.2 * new_w, width - 0.8 * new_w))
        y1 = round(y_bottom) - new_h
        box = _paste_one(out, covered, cutout, (x1, y1, new_w, new_h), light)
        if box is not None:
            pasted.append((cutout.cls, box))
    kept = [(cls, box) for cls, box in labels if _share_covered(covered, box) <= HIDDEN]
    return out, kept + pasted


def _paste_one(out: np.ndarray, covered: np.ndarray, cutout: Cutout, place: tuple[int, int, int, int],
               light: np.ndarray) -> Box | None:
    """Blends the cut-out into ``out`` at ``place`` (x, y, w, h, may overhang the frame); returns
    its visible box, or None when too little of it is in the frame."""
    height, width = out.shape[:2]
    x, y, w, h = place
    image = cv2.resize(cutout.image, (w, h), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(cutout.mask, (w, h), interpolation=cv2.INTER_NEAREST)
    fx1, fy1, fx2, fy2 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if fx2 - fx1 < VISIBLE * w or fy2 <= fy1:
        return None
    image = image[fy1 - y: fy2 - y, fx1 - x: fx2 - x]
    mask = mask[fy1 - y: fy2 - y, fx1 - x: fx2 - x]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    alpha = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0  # no hard cut edge
    region = out[fy1:fy2, fx1:fx2].astype(np.float32)
    lit = np.clip(image.astype(np.float32) * light, 0, 255)
    out[fy1:fy2, fx1:fx2] = (region * (1 - alpha) + lit * alpha).astype(np.uint8)
    covered[fy1:fy2, fx1:fx2] |= mask
    return (float(fx1 + xs.min()), float(fy1 + ys.min()), float(fx1 + xs.max()), float(fy1 + ys.max()))


def _share_covered(covered: np.ndarray, box: Box) -> float:
    x1, y1, x2, y2 = (round(v) for v in box)
    area = covered[max(0, y1): y2 + 1, max(0, x1): x2 + 1]
    return float(np.count_nonzero(area)) / area.size if area.size else 0.0
