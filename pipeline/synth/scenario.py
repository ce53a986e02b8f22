"""A street, what happens in it over time, and the violation episodes that follow.

Layout (fractions of the frame height, camera looking across the street): shop fronts at the top,
the north sidewalk, two traffic lanes and a kerb lane, the south sidewalk at the bottom. Objects
further up the frame are further away and drawn smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.synth.actors import Actor, Path, random_look


@dataclass(frozen=True)
class Layout:
    shops_bottom: float = 0.26
    north_walk_bottom: float = 0.46
    lane_a: float = 0.60  # bottom line of vehicles in each lane
    lane_b: float = 0.72
    kerb_lane: float = 0.85
    road_bottom: float = 0.88

    def scale_at(self, height: int):
        """Perspective: size factor for an object standing at pixel row y."""
        return lambda y: 0.5 + 0.6 * (y / height)


@dataclass(frozen=True)
class Episode:
    """An object at rest in a zone: what a rule may turn into a case if it lasts long enough."""

    kind: str  # rule type it can trigger
    zone_id: str
    cls: str
    start_s: float
    end_s: float
    box: tuple[float, float, float, float]  # pixels, while at rest

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Scenario:
    width: int
    height: int
    fps: float
    duration_s: float
    layout: Layout
    background: np.ndarray
    actors: list[Actor]
    episodes: list[Episode] = field(default_factory=list)
    lighting: tuple[float, tuple[float, float, float]] = (1.0, (1.0, 1.0, 1.0))
    noise_sigma: float = 2.0

    def objects_at(self, t: float) -> list[tuple[Actor, tuple[float, float, float, float]]]:
        scale_at = self.layout.scale_at(self.height)
        placed = [(a, a.box(t, self.width, scale_at)) for a in self.actors]
        placed = [(a, b) for a, b in placed if b is not None and b[2] > 0 and b[0] < self.width]
        # painter's order: what stands lower in the frame is nearer and drawn last
        return sorted(placed, key=lambda ab: ab[1][3])

    def render(self, t: float, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, tuple]]]:
        """The frame at time t and its visible labelled boxes (class, clipped xyxy)."""
        img = self.background.copy()
        labels = []
        for actor, box in self.objects_at(t):
            actor.draw(img, box)
            x1, y1, x2, y2 = box
            clipped = (max(0.0, x1), max(0.0, y1), min(self.width - 1.0, x2), min(self.height - 1.0, y2))
            visible = (clipped[2] - clipped[0]) / max(1e-6, box[2] - box[0])
            if visible >= 0.4:
                labels.append((actor.cls, clipped))
        gain, tint = self.lighting
        if gain != 1.0 or tint != (1.0, 1.0, 1.0):
            img = cv2.multiply(img, np.array([gain * c for c in tint] + [0.0]))
        if self.noise_sigma > 0:
            noise = rng.normal(0, self.noise_sigma, img.shape).astype(np.int16)
            img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return img, labels


def draw_background(width: int, height: int, layout: Layout, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    y = lambda f: int(round(f * height))
    # shop fronts
    x = 0
    while x < width:
        w = int(rng.integers(width // 10, width // 5))
        wall = tuple(int(c) for c in rng.integers(90, 220, 3))
        cv2.rectangle(img, (x, 0), (x + w, y(layout.shops_bottom)), wall, -1)
        sign = tuple(int(c) for c in rng.choice([(30, 30, 180), (160, 60, 20), (30, 140, 200), (40, 120, 40)]))
        cv2.rectangle(img, (x + 4, y(0.09)), (x + w - 4, y(0.14)), sign, -1)
        for i in range(int(rng.integers(2, 5))):
            gx = x + 10 + i * max(8, w // 5)
            cv2.rectangle(img, (gx, y(0.105)), (gx + max(4, w // 10), y(0.125)), (235, 235, 235), -1)
        door_w = max(10, w // 3)
        cv2.rectangle(img, (x + w // 2 - door_w // 2, y(0.16)), (x + w // 2 + door_w // 2, y(layout.shops_bottom)),
                      (70, 60, 50), -1)
        cv2.rectangle(img, (x + 6, y(0.17)), (x + w // 2 - door_w // 2 - 4, y(0.23)), (150, 120, 90), -1)
        cv2.line(img, (x, 0), (x, y(layout.shops_bottom)), (60, 60, 60), 2)
        x += w
    # sidewalks with tiles
    walk = tuple(int(c) for c in rng.integers(150, 190, 3))
    for top, bottom in ((layout.shops_bottom, layout.north_walk_bottom), (layout.road_bottom, 1.0)):
        cv2.rectangle(img, (0, y(top)), (width, y(bottom)), walk, -1)
        step = max(12, width // 24)
        for tx in range(0, width, step):
            cv2.line(img, (tx, y(top)), (tx, y(bottom)), tuple(c - 20 for c in walk), 1)
    cv2.rectangle(img, (0, y(layout.north_walk_bottom)), (width, y(layout.north_walk_bottom) + 4), (200, 200, 200), -1)
    # road, lane marks
    asphalt = int(rng.integers(55, 85))
    cv2.rectangle(img, (0, y(layout.north_walk_bottom) + 4), (width, y(layout.road_bottom)), (asphalt,) * 3, -1)
    dash = max(20, width // 16)
    for mark in ((layout.lane_a + layout.lane_b) / 2 + 0.01, (layout.lane_b + layout.kerb_lane) / 2 + 0.01):
        for dx in range(0, width, dash * 2):
            cv2.line(img, (dx, y(mark)), (dx + dash, y(mark)), (230, 230, 230), 2)
    cv2.line(img, (0, y(layout.road_bottom) - 3), (width, y(layout.road_bottom) - 3), (40, 200, 230), 2)
    cv2.rectangle(img, (0, y(layout.road_bottom)), (width, y(layout.road_bottom) + 4), (200, 200, 200), -1)
    # a few poles and trees on the south sidewalk, in front of the road
    for px in rng.integers(0, width, int(rng.integers(1, 4))):
        cv2.line(img, (int(px), y(layout.road_bottom) - y(0.25)), (int(px), height), (80, 80, 80), 4)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _mover(cls, rng, t0, lane_y, speed, width, direction, **look_kw) -> Actor:
    size, look = random_look(cls, rng, **look_kw)
    look["facing"] = direction
    margin = size[0] * 2
    start, end = (-margin, width + margin) if direction > 0 else (width + margin, -margin)
    return Actor(cls, Path([(t0, start, lane_y), (t0 + abs(end - start) / speed, end, lane_y)]), size, look)


def _parker(rng, width, lane_y, x_park, t_stop, t_leave, speed=120.0) -> Actor:
    """A car that drives in along the kerb lane, stops at x_park, and leaves to the right."""
    size, look = random_look("vehicle", rng, variant="car")
    look["facing"] = 1
    start = -size[0]
    t_enter = t_stop - (x_park - start) / speed - 2.0  # the last 2 s: a slow creep to the stop
    creep = x_park - speed * 0.25 * 2.0
    keys = [(t_enter, start, lane_y), (t_stop - 2.0, creep, lane_y), (t_stop, x_park, lane_y),
            (t_leave, x_park, lane_y), (t_leave + (width + size[0] - x_park) / speed, width + size[0], lane_y)]
    return Actor("vehicle", Path(keys), size, look)


def _static(cls, rng, x, y_bottom, t0, t1, **look_kw) -> Actor:
    size, look = random_look(cls, rng, **look_kw)
    return Actor(cls, Path([(t0, x, y_bottom), (t1, x, y_bottom)]), size, look)


def _traffic(rng, width, height, layout, duration_s, actors):
    for lane, direction in ((layout.lane_a, -1), (layout.lane_b, 1)):
        t = float(rng.uniform(-8, 0))
        while t < duration_s:
            actors.append(_mover("vehicle", rng, t, lane * height, rng.uniform(90, 170), width, direction))
            t += float(rng.uniform(3.5, 9))
    for walk_y, count in ((layout.north_walk_bottom - 0.01, 1.0), (0.97, 0.6)):
        t = float(rng.uniform(-20, 0))
        while t < duration_s:
            cls = "person" if rng.random() < 0.75 else "non_motor_vehicle"
            speed = rng.uniform(25, 45) if cls == "person" else rng.uniform(60, 100)
            actors.append(_mover(cls, rng, t, walk_y * height, speed, width, int(rng.choice([-1, 1]))))
            t += float(rng.uniform(4, 12)) / count


def sample_scenario(seed: int = 7, width: int = 960, height: int = 540, fps: float = 15.0,
                    duration_s: float = 150.0) -> Scenario:
    """The shipped sample street: a scripted timeline with known violation episodes.

    Zone ids match ``streams/sample-street.yaml``. Timeline: a car parks in the no-parking kerb
    lane (10–55 s), another stops there only briefly (40–52 s), a third parks (80–140 s); a stall
    sets up on the north sidewalk (20–95 s); the bin overflows (60–120 s); a car parked all along
    outside the zone and a garbage pile outside every zone never make a case.
    """
    rng = np.random.default_rng(seed)
    layout = Layout()
    H = height
    actors: list[Actor] = []
    episodes: list[Episode] = []
    scale_at = layout.scale_at(H)

    def rest(actor: Actor, kind: str, zone: str, t0: float, t1: float) -> None:
        box = actor.box((t0 + t1) / 2, width, scale_at)
        episodes.append(Episode(kind, zone, actor.cls, t0, t1, box))

    kerb = layout.kerb_lane * H
    for x_frac, t_stop, t_leave in ((0.22, 10.0, 55.0), (0.46, 40.0, 52.0), (0.34, 80.0, 140.0)):
        car = _parker(rng, width, kerb, x_frac * width, t_stop, t_leave)
        actors.append(car)
        rest(car, "illegal_parking", "no-parking-kerb", t_stop, t_leave)
    actors.append(_static("vehicle", rng, 0.86 * width, kerb, -1.0, duration_s + 1, variant="car"))

    walk = (layout.north_walk_bottom - 0.02) * H
    size, look = random_look("stall", rng)
    # pushed in fast from the east, so it is in the zone (x < 0.62) only 1.5 s before it stops
    stall = Actor("stall", Path([(15.0, width + size[0], walk), (18.5, 0.62 * width, walk), (20.0, 0.30 * width, walk),
                                 (95.0, 0.30 * width, walk), (101.0, -size[0], walk)]), size, look)
    actors.append(stall)
    rest(stall, "stall_encroachment", "sidewalk-north", 20.0, 95.0)

    bin_x = 0.76 * width
    actors.append(_static("bin", rng, bin_x, walk, -1.0, 60.0))
    overflow = _static("overflowing_bin", rng, bin_x, walk, 60.0, 120.0)
    actors.append(overflow)
    rest(overflow, "bin_overflow", "bin-east", 60.0, 120.0)
    actors.append(_static("bin", rng, bin_x, walk, 120.0, duration_s + 1))
    actors.append(_static("garbage_pile", rng, 0.55 * width, 0.97 * H, -1.0, duration_s + 1))

    _traffic(rng, width, height, layout, duration_s, actors)
    return Scenario(width, height, fps, duration_s, layout, draw_background(width, height, layout, rng),
                    actors, episodes, noise_sigma=2.0)


def random_scene(rng: np.random.Generator, width: int, height: int) -> Scenario:
    """A random street at one instant (t = 0), for training images: varied layout, look and light."""
    jitter = lambda v, d=0.02: float(v + rng.uniform(-d, d))
    layout = Layout(shops_bottom=jitter(0.26), north_walk_bottom=jitter(0.46), lane_a=jitter(0.60),
                    lane_b=jitter(0.72), kerb_lane=jitter(0.85), road_bottom=jitter(0.89, 0.01))
    H, W = height, width
    actors: list[Actor] = []

    def put(cls, x, y_frac, **kw):
        actors.append(_static(cls, rng, x, y_frac * H, -1.0, 1.0, **kw))

    for lane in (layout.lane_a, layout.lane_b, layout.kerb_lane):
        for x in rng.uniform(-0.1, 1.1, int(rng.integers(0, 4))) * W:
            put("vehicle", x, lane + rng.uniform(-0.01, 0.01))
    for walk_y in (layout.north_walk_bottom - rng.uniform(0.0, 0.06), rng.uniform(0.93, 0.99)):
        for cls, most in (("stall", 2), ("bin", 2), ("overflowing_bin", 2), ("garbage_pile", 2),
                          ("person", 5), ("non_motor_vehicle", 2)):
            for x in rng.uniform(0.0, 1.0, int(rng.integers(0, most + 1))) * W:
                put(cls, x, walk_y + rng.uniform(-0.01, 0.01))
    for x in rng.uniform(0, 1, int(rng.integers(0, 3))) * W:
        put("non_motor_vehicle", x, layout.lane_b + rng.uniform(0.02, 0.1))
    light = rng.choice(["day", "day", "overcast", "dusk", "night"])
    gain, tint = {"day": (1.0, (1.0, 1.0, 1.0)), "overcast": (0.8, (1.0, 1.0, 0.95)),
                  "dusk": (0.6, (1.1, 0.95, 0.85)), "night": (0.35, (1.2, 1.0, 0.8))}[light]
    return Scenario(W, H, 1.0, 1.0, layout, draw_background(W, H, layout, rng), actors,
                    lighting=(gain * rng.uniform(0.9, 1.1), tint), noise_sigma=float(rng.uniform(1, 6)))
