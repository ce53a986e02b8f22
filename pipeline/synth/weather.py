"""Weather and lens effects a pole camera sees and flat-shaded drawings lack: rain and glare.

Applied to training scenes only (``render_dataset(weather=True)``); the boxes stay as they are,
since rain streaks and a flare wash objects out without moving them.
"""

from __future__ import annotations

import cv2
import numpy as np

RAIN_SHARE = 0.2  # of training scenes
GLARE_SHARE = 0.15


def add_weather(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain on about one scene in five, a low sun or a headlight's glare on about one in seven."""
    if rng.random() < RAIN_SHARE:
        img = rain(img, rng)
    if rng.random() < GLARE_SHARE:
        img = glare(img, rng)
    return img


def rain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slanted bright streaks, drawn on a layer and motion-blurred along the slant, over a dimmed,
    slightly hazy frame (wet air scatters light)."""
    height, width = img.shape[:2]
    layer = np.zeros((height, width), np.float32)
    count = int(width * height / rng.uniform(300, 900))
    length = max(4, int(height * rng.uniform(0.02, 0.05)))
    slant = rng.uniform(-0.4, 0.4)
    xs = rng.integers(0, width, count)
    ys = rng.integers(0, height, count)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        cv2.line(layer, (x, y), (int(x + slant * length), y + length), float(rng.uniform(0.3, 0.9)), 1)
    layer = cv2.GaussianBlur(layer, (3, 3), 0)
    hazy = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.4)).astype(np.float32) * rng.uniform(0.7, 0.9)
    streaks = layer[..., None] * rng.uniform(120, 200)
    return np.clip(hazy + streaks, 0, 255).astype(np.uint8)


def glare(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright radial bloom from a point near the frame (low sun, headlight) that lifts and washes
    out what is near it, with a faint veil over the whole frame."""
    height, width = img.shape[:2]
    cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 0.7) * height
    radius = rng.uniform(0.2, 0.6) * max(width, height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    falloff = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    strength = rng.uniform(0.5, 0.95)
    veil = rng.uniform(0.03, 0.12)
    lift = (strength * falloff + veil)[..., None]
    tint = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.95, 1.0), 1.0], np.float32)  # BGR: warm light
    out = img.astype(np.float32) * (1 - lift) + 255.0 * tint * lift
    return np.clip(out, 0, 255).astype(np.uint8)
