"""Things that appear in a synthetic street, each drawn with OpenCV and boxed exactly.

An actor has a class (one of ``CLASSES``), a look fixed at creation (colours, proportions) and a
path: where its bottom-centre stands over time. Sizes are given for a 960-pixel-wide frame at
perspective scale 1 and scaled to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# The project's class map; index = YOLO class id of the project's own model.
CLASSES = (
    "vehicle",
    "non_motor_vehicle",
    "person",
    "stall",
    "bin",
    "overflowing_bin",
    "garbage_pile",
)

CAR_COLOURS = [(235, 235, 235), (190, 190, 195), (40, 40, 45), (40, 40, 170), (150, 80, 30),
               (110, 110, 110), (30, 90, 160), (60, 120, 60), (200, 200, 170)]
BAG_COLOURS = [(25, 25, 25), (40, 90, 40), (60, 60, 60), (200, 200, 200), (30, 60, 120), (90, 60, 50)]


@dataclass
class Path:
    """Piecewise-linear bottom-centre position: keyframes (t_s, x_px, y_bottom_px)."""

    keys: list[tuple[float, float, float]]

    @property
    def t_start(self) -> float:
        return self.keys[0][0]

    @property
    def t_end(self) -> float:
        return self.keys[-1][0]

    def at(self, t: float) -> tuple[float, float] | None:
        if t < self.t_start or t > self.t_end:
            return None
        times = [k[0] for k in self.keys]
        x = float(np.interp(t, times, [k[1] for k in self.keys]))
        y = float(np.interp(t, times, [k[2] for k in self.keys]))
        return x, y


@dataclass
class Actor:
    cls: str
    path: Path
    base_size: tuple[float, float]  # (w, h) at scale 1 in a 960-wide frame
    look: dict = field(default_factory=dict)

    def box(self, t: float, frame_w: int, scale_at) -> tuple[float, float, float, float] | None:
        pos = self.path.at(t)
        if pos is None:
            return None
        x, yb = pos
        s = scale_at(yb) * frame_w / 960.0
        w, h = self.base_size[0] * s, self.base_size[1] * s
        return x - w / 2, yb - h, x + w / 2, yb

    def draw(self, img: np.ndarray, box: tuple[float, float, float, float]) -> None:
        DRAWERS[self.cls](img, box, self.look)


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points)).astype(np.int32)


def _draw_vehicle(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    body = look["colour"]
    dark = tuple(int(c * 0.55) for c in body)
    wheel_r = max(2, int(h * 0.17))
    if look.get("type") == "bus":
        cv2.rectangle(img, _pts((x1, y1)), _pts((x2, y2 - wheel_r)), body, -1)
        for i in range(6):
            wx = x1 + w * (0.06 + 0.15 * i)
            cv2.rectangle(img, _pts((wx, y1 + h * 0.12)), _pts((wx + w * 0.12, y1 + h * 0.45)), (70, 60, 50), -1)
        cv2.rectangle(img, _pts((x1, y1 + h * 0.55)), _pts((x2, y1 + h * 0.62)), dark, -1)
    else:
        roof_h = h * look.get("roof", 0.42)
        cv2.rectangle(img, _pts((x1, y1 + roof_h)), _pts((x2, y2 - wheel_r)), body, -1)
        cabin = [(x1 + w * 0.2, y1 + roof_h), (x1 + w * 0.3, y1), (x1 + w * 0.72, y1), (x1 + w * 0.85, y1 + roof_h)]
        cv2.fillPoly(img, [_pts(cabin)], body)
        glass = [(x1 + w * 0.25, y1 + roof_h), (x1 + w * 0.33, y1 + h * 0.07),
                 (x1 + w * 0.69, y1 + h * 0.07), (x1 + w * 0.79, y1 + roof_h)]
        cv2.fillPoly(img, [_pts(glass)], (90, 70, 60))
        cv2.line(img, _pts((x1 + w * 0.52, y1)), _pts((x1 + w * 0.52, y1 + roof_h)), body, max(1, int(w * 0.02)))
        cv2.rectangle(img, _pts((x1, y2 - wheel_r - h * 0.12)), _pts((x2, y2 - wheel_r)), dark, -1)
        lamp = (40, 200, 255) if look.get("facing", 1) > 0 else (30, 30, 200)
        lx = x2 - w * 0.04 if look.get("facing", 1) > 0 else x1
        cv2.rectangle(img, _pts((lx, y1 + roof_h + h * 0.05)), _pts((lx + w * 0.04, y1 + roof_h + h * 0.15)), lamp, -1)
    for fx in (0.2, 0.8):
        c = _pts((x1 + w * fx, y2 - wheel_r))
        cv2.circle(img, tuple(c), wheel_r, (20, 20, 20), -1)
        cv2.circle(img, tuple(c), max(1, wheel_r // 2), (120, 120, 120), -1)


def _draw_non_motor(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    r = max(2, int(w * 0.2))
    for fx in (0.2, 0.8):
        cv2.circle(img, tuple(_pts((x1 + w * fx, y2 - r))), r, (25, 25, 25), max(1, r // 3))
    frame_pts = _pts([(x1 + w * 0.2, y2 - r), (x1 + w * 0.5, y2 - r * 1.2), (x1 + w * 0.8, y2 - r),
                      (x1 + w * 0.7, y1 + h * 0.45)])
    cv2.polylines(img, [frame_pts], False, look["colour"], max(1, int(w * 0.07)))
    _draw_rider(img, (x1 + w * 0.25, y1, x1 + w * 0.7, y1 + h * 0.6), look)


def _draw_rider(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    head_r = max(2, int(min(w, h) * 0.18))
    cv2.circle(img, tuple(_pts((x1 + w / 2, y1 + head_r))), head_r, look.get("skin", (150, 180, 220)), -1)
    if look.get("helmet"):
        cv2.ellipse(img, tuple(_pts((x1 + w / 2, y1 + head_r))), (head_r, head_r), 0, 180, 360, look["helmet"], -1)
    cv2.rectangle(img, _pts((x1 + w * 0.2, y1 + head_r * 2)), _pts((x2 - w * 0.2, y2)), look["shirt"], -1)


def _draw_person(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    _draw_rider(img, (x1, y1, x2, y1 + h * 0.6), look)
    leg = max(1, int(w * 0.22))
    swing = look.get("swing", 0.0)
    for side in (-1, 1):
        top = (x1 + w * (0.5 + 0.15 * side), y1 + h * 0.6)
        foot = (x1 + w * (0.5 + 0.15 * side + 0.2 * side * swing), y2)
        cv2.line(img, tuple(_pts(top)), tuple(_pts(foot)), look["trousers"], leg)


def _draw_stall(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    wheel_r = max(2, int(h * 0.08))
    cart_top = y1 + h * 0.55
    cv2.rectangle(img, _pts((x1 + w * 0.05, cart_top)), _pts((x2 - w * 0.05, y2 - wheel_r)), look["cart"], -1)
    for i in range(look["goods"]):
        gx = x1 + w * (0.08 + 0.84 * i / max(1, look["goods"]))
        colour = look["goods_colours"][i % len(look["goods_colours"])]
        cv2.rectangle(img, _pts((gx, cart_top - h * 0.08)), _pts((gx + w * 0.12, cart_top + h * 0.05)), colour, -1)
    cv2.line(img, _pts((x1 + w / 2, y1 + h * 0.2)), _pts((x1 + w / 2, cart_top)), (60, 60, 60), max(1, int(w * 0.03)))
    centre = tuple(_pts((x1 + w / 2, y1 + h * 0.25)))
    axes = (int(w / 2), int(h * 0.25))
    stripes = look["umbrella"]
    step = 180 // len(stripes)
    for i, colour in enumerate(stripes):
        cv2.ellipse(img, centre, axes, 0, 180 + i * step, 180 + (i + 1) * step, colour, -1)
    if look.get("tricycle"):
        cv2.circle(img, tuple(_pts((x1 + w * 0.85, y2 - wheel_r))), wheel_r, (20, 20, 20), -1)
    for fx in (0.2, 0.6):
        cv2.circle(img, tuple(_pts((x1 + w * fx, y2 - wheel_r))), wheel_r, (20, 20, 20), -1)


def _draw_bin(img, box, look, *, lid_open: bool = False):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cv2.rectangle(img, _pts((x1 + w * 0.05, y1 + h * 0.12)), _pts((x2 - w * 0.05, y2)), look["colour"], -1)
    lid_colour = tuple(int(c * 0.7) for c in look["colour"])
    if lid_open:
        cv2.line(img, _pts((x1, y1 + h * 0.12)), _pts((x1 + w * 0.3, y1 - h * 0.15)), lid_colour, max(1, int(h * 0.08)))
    else:
        cv2.rectangle(img, _pts((x1, y1)), _pts((x2, y1 + h * 0.14)), lid_colour, -1)
    cv2.rectangle(img, _pts((x1 + w * 0.3, y1 + h * 0.35)), _pts((x2 - w * 0.3, y1 + h * 0.45)), (240, 240, 240), -1)


def _draw_bags(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    for fx, fy, fr, colour in look["bags"]:
        c = tuple(_pts((x1 + w * fx, y1 + h * fy)))
        axes = (max(2, int(w * fr)), max(2, int(h * fr * 0.9)))
        cv2.ellipse(img, c, axes, 0, 0, 360, colour, -1)
        cv2.ellipse(img, c, axes, 0, 200, 300, tuple(min(255, v + 50) for v in colour), max(1, axes[0] // 4))


def _draw_overflowing_bin(img, box, look):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    bin_box = (x1 + w * 0.2, y1 + h * 0.3, x2 - w * 0.2, y2)
    _draw_bags(img, (x1, y1 + h * 0.45, x2, y2), {"bags": look["ground_bags"]})
    _draw_bin(img, bin_box, look, lid_open=True)
    _draw_bags(img, (x1 + w * 0.15, y1, x2 - w * 0.15, y1 + h * 0.45), look)


DRAWERS = {
    "vehicle": _draw_vehicle,
    "non_motor_vehicle": _draw_non_motor,
    "person": _draw_person,
    "stall": _draw_stall,
    "bin": _draw_bin,
    "overflowing_bin": _draw_overflowing_bin,
    "garbage_pile": _draw_bags,
}

BASE_SIZES = {
    "car": (150, 62),
    "bus": (300, 115),
    "non_motor_vehicle": (48, 52),
    "person": (20, 56),
    "stall": (95, 110),
    "bin": (30, 46),
    "overflowing_bin": (62, 70),
    "garbage_pile": (60, 34),
}


def random_look(cls: str, rng: np.random.Generator, *, variant: str | None = None) -> tuple[tuple[float, float], dict]:
    """A random appearance for one actor: (base size, look dict)."""

    def colour(choices=None):
        if choices:
            return tuple(int(c) for c in choices[rng.integers(len(choices))])
        return tuple(int(c) for c in rng.integers(30, 230, 3))

    jitter = rng.uniform(0.85, 1.15)
    if cls == "vehicle":
        kind = variant or ("bus" if rng.random() < 0.1 else "car")
        w, h = BASE_SIZES[kind]
        size = (w * jitter, h * rng.uniform(0.9, 1.2))
        look = {"type": kind, "colour": colour(CAR_COLOURS), "roof": rng.uniform(0.35, 0.48)}
        return size, look
    if cls in ("non_motor_vehicle", "person"):
        w, h = BASE_SIZES[cls]
        look = {"shirt": colour(), "trousers": colour([(40, 40, 40), (90, 60, 30), (120, 100, 80)]),
                "colour": colour(), "skin": (140, 170, 215), "swing": rng.uniform(-1, 1),
                "helmet": colour([(0, 200, 255), (255, 255, 255), (30, 30, 200)]) if rng.random() < 0.6 else None}
        return (w * jitter, h * jitter), look
    if cls == "stall":
        w, h = BASE_SIZES[cls]
        palette = [(40, 40, 200), (255, 255, 255), (0, 180, 255), (200, 120, 30), (60, 160, 60)]
        n = int(rng.integers(2, 5))
        look = {"cart": colour([(60, 90, 140), (180, 180, 180), (30, 120, 200), (80, 80, 80)]),
                "umbrella": [colour(palette) for _ in range(n)],
                "goods": int(rng.integers(3, 7)), "goods_colours": [colour() for _ in range(4)],
                "tricycle": bool(rng.random() < 0.6)}
        return (w * jitter, h * jitter), look
    bin_colour = colour([(60, 130, 40), (110, 110, 110), (40, 90, 30), (150, 110, 40)])

    def bags(n, spread=1.0):
        return [(rng.uniform(0.15, 0.85), rng.uniform(0.35, 0.7) if spread else 0.5,
                 rng.uniform(0.12, 0.25), colour(BAG_COLOURS)) for _ in range(n)]

    if cls == "bin":
        w, h = BASE_SIZES[cls]
        return (w * jitter, h * jitter), {"colour": bin_colour}
    if cls == "overflowing_bin":
        w, h = BASE_SIZES[cls]
        return (w * jitter, h * jitter), {"colour": bin_colour, "bags": bags(int(rng.integers(3, 6))),
                                          "ground_bags": bags(int(rng.integers(1, 4)))}
    if cls == "garbage_pile":
        w, h = BASE_SIZES[cls]
        return (w * rng.uniform(0.7, 1.5), h * jitter), {"bags": bags(int(rng.integers(3, 8)))}
    raise ValueError(f"unknown actor class {cls!r}")
