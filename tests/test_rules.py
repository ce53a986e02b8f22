from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pipeline.config import CameraConfig
from pipeline.rules import RuleEngine
from pipeline.rules.case_id import case_id
from pipeline.types import Detections, Frame, Role, Violation

WIDTH, HEIGHT = 64, 36
IMAGE = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
# Zone "lot" covers x 6..38, y 18..34 px; a box ending at y=30 stands inside it.
LOT = [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]
RIGHT_HALF = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
CAR = (10.0, 20.0, 20.0, 30.0)


@dataclass(frozen=True)
class Obj:
    track_id: int
    box: tuple[float, float, float, float] = CAR
    role: Role = Role.VEHICLE
    score: float = 0.9


def camera(*zones: tuple[str, list[list[float]], dict]) -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": "cam",
            "name": "test",
            "url": "test.mp4",
            "location": {"lat": 36.7, "lon": 117.5},
            "zones": [{"id": zid, "polygon": polygon, "rules": [rule]} for zid, polygon, rule in zones],
        }
    )


def parking(**overrides: object) -> RuleEngine:
    return RuleEngine(camera(("lot", LOT, {"type": "illegal_parking", "dwell_s": 10, **overrides})), "test")


def detections(objects: Sequence[Obj]) -> Detections:
    if not objects:
        return Detections.empty()
    return Detections(
        xyxy=np.array([o.box for o in objects], np.float32),
        score=np.array([o.score for o in objects], np.float32),
        class_id=np.zeros(len(objects), np.int32),
        role=np.array([str(o.role) for o in objects]),
        track_id=np.array([o.track_id for o in objects], np.int64),
    )


def drive(
    engine: RuleEngine,
    pts: Iterable[float],
    scene: Callable[[float], Sequence[Obj]],
    wall_start: float = NOON,
) -> list[Violation]:
    """Feeds one frame per pts value, with the objects ``scene`` puts there at that time."""
    violations = []
    for seq, t in enumerate(pts):
        frame = Frame("cam", seq, t, wall_start + t, IMAGE)
        violations += engine.update(frame, detections(scene(t)))
    return violations


def every(step: float, start: float, stop: float) -> list[float]:
    return [round(start + i * step, 6) for i in range(round((stop - start) / step) + 1)]


def test_parked_car_is_one_case_at_dwell_with_its_evidence() -> None:
    def jittering_car(t: float) -> list[Obj]:
        jitter = 0.5 if round(t * 5) % 2 else -0.5  # detector noise must not restart the dwell
        x1, y1, x2, y2 = CAR
        return [Obj(7, (x1 + jitter, y1, x2 + jitter, y2), score=0.6 if round(t * 5) % 2 else 1.0)]

    violations = drive(parking(), every(0.2, 100.0, 115.0), jittering_car)

    (case,) = violations
    assert case.kind == "illegal_parking" and case.zone_id == "lot" and case.track_id == 7
    assert case.first_seen_s == 100.0 and 110.0 <= case.confirmed_s <= 110.2
    assert case.first_frame.pts_s == 100.0 and case.trigger_frame.pts_s == case.confirmed_s
    assert case.first_bbox == (9.5, 20.0, 19.5, 30.0)
    assert case.score == pytest.approx(0.8, abs=0.02)
    assert case.case_id.startswith("P-") and len(case.case_id) == 18


def test_car_parked_for_ten_dwells_is_still_one_case() -> None:
    violations = drive(parking(), every(0.5, 0.0, 100.0), lambda t: [Obj(1)])

    assert len(violations) == 1


def test_new_track_id_mid_dwell_and_mid_episode_keeps_one_case_from_the_first_sighting() -> None:
    def renumbered(t: float) -> list[Obj]:
        if t < 4.0:
            return [Obj(1)]
        if t < 5.0:
            return []  # the tracker lost the car for a second
        if t < 30.0:
            return [Obj(2, (10.5, 20.0, 20.5, 30.5))]
        if t < 45.0:
            return []  # hidden by a bus: longer than max_gap_s, shorter than the cool-down
        return [Obj(3)]  # and renumbered again

    violations = drive(parking(), every(0.2, 0.0, 60.0), renumbered)

    (case,) = violations
    assert case.first_seen_s == 0.0 and 10.0 <= case.confirmed_s <= 10.2
    assert case.track_id == 2


def test_dwell_restarts_after_the_car_was_gone_longer_than_max_gap() -> None:
    def away_for_6s(t: float) -> list[Obj]:
        return [] if 6.0 <= t < 12.0 else [Obj(1)]

    (case,) = drive(parking(max_gap_s=5), every(0.5, 0.0, 30.0), away_for_6s)

    assert case.first_seen_s == 12.0 and case.confirmed_s == 22.0


def test_car_driving_through_the_zone_is_not_parked() -> None:
    # 6 px/s: about 5 s in the zone, longer than the dwell.
    def passing(t: float) -> list[Obj]:
        x = t * 6.0
        return [Obj(1, (x, 20.0, x + 10.0, 30.0))]

    assert drive(parking(dwell_s=3), every(0.2, 0.0, 10.0), passing) == []


def test_car_creeping_along_is_not_parked() -> None:
    # 1 px/s: 30 s in the zone, never near where its dwell started for 3 s.
    def creeping(t: float) -> list[Obj]:
        x = t * 1.0
        return [Obj(1, (x, 20.0, x + 10.0, 30.0))]

    assert drive(parking(dwell_s=3), every(0.2, 0.0, 30.0), creeping) == []


def test_another_car_after_the_cool_down_is_a_second_case() -> None:
    def two_visits(t: float) -> list[Obj]:
        if t < 20.0:
            return [Obj(1)]
        if t < 50.0:
            return []  # longer than the 20 s cool-down
        return [Obj(2)]

    violations = drive(parking(dwell_s=5, cooldown_s=20), every(0.5, 0.0, 60.0), two_visits)

    assert [v.first_seen_s for v in violations] == [0.0, 50.0]
    assert violations[0].case_id != violations[1].case_id


def test_dwell_is_measured_in_stream_time_despite_dropped_frames() -> None:
    pts = [0.0, 0.2, 0.4, 3.0, 3.1, 7.9, 8.3, 9.9, 10.7, 12.0, 12.1]

    (case,) = drive(parking(), pts, lambda t: [Obj(1)])

    assert case.confirmed_s == 10.7


@pytest.mark.parametrize(
    ("hours", "start_local", "cases"),
    [
        (["06:00-22:00"], "12:00", 1),
        (["06:00-22:00"], "23:00", 0),
        (["22:00-02:00"], "23:30", 1),
        (["22:00-02:00"], "01:00", 1),
        (["22:00-02:00"], "12:00", 0),
        (["22:00-02:00"], "01:58", 0),  # the window closes before the 180 s dwell is reached
    ],
)
def test_stall_counts_only_inside_its_hours(hours: list[str], start_local: str, cases: int) -> None:
    rule = {"type": "stall_encroachment", "dwell_s": 180, "hours": hours}
    engine = RuleEngine(camera(("sidewalk", LOT, rule)), "test")
    hour, minute = map(int, start_local.split(":"))
    wall_start = datetime(2024, 5, 1, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()

    violations = drive(engine, every(1.0, 0.0, 300.0), lambda t: [Obj(1, role=Role.STALL)], wall_start)

    assert len(violations) == cases


@pytest.mark.parametrize(
    ("box", "cases"),
    [
        ((25.0, 10.0, 35.0, 20.0), 0),  # 30 % of the pile in the zone
        ((28.0, 10.0, 38.0, 20.0), 1),  # 60 %
    ],
)
def test_garbage_needs_min_overlap_with_the_zone(box: tuple[float, ...], cases: int) -> None:
    rule = {"type": "bin_overflow", "dwell_s": 5, "min_overlap": 0.5}
    engine = RuleEngine(camera(("bins", RIGHT_HALF, rule)), "test")

    violations = drive(engine, every(0.5, 0.0, 10.0), lambda t: [Obj(1, box, Role.GARBAGE_PILE)])

    assert len(violations) == cases
    assert all(v.case_id.startswith("G-") for v in violations)


def test_only_the_rule_roles_count() -> None:
    violations = drive(parking(), every(0.5, 0.0, 20.0), lambda t: [Obj(1, role=Role.PERSON)])

    assert violations == []


def test_cars_in_two_zones_are_two_cases() -> None:
    rule = {"type": "illegal_parking", "dwell_s": 5}
    left_half = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    engine = RuleEngine(camera(("west", left_half, rule), ("east", RIGHT_HALF, rule)), "test")
    east_car = (40.0, 20.0, 50.0, 30.0)

    violations = drive(engine, every(0.5, 0.0, 10.0), lambda t: [Obj(1), Obj(2, east_car)])

    assert sorted(v.zone_id for v in violations) == ["east", "west"]
    assert len({v.case_id for v in violations}) == 2


def test_cars_arriving_together_in_one_zone_get_distinct_case_ids() -> None:
    neighbour = (24.0, 20.0, 34.0, 30.0)

    violations = drive(parking(), every(0.5, 0.0, 12.0), lambda t: [Obj(1), Obj(2, neighbour)])

    assert len(violations) == 2 and violations[0].case_id != violations[1].case_id


def test_replay_files_the_same_case_ids() -> None:
    def scene(t: float) -> list[Obj]:
        return [Obj(1)] + ([Obj(5, (24.0, 20.0, 34.0, 30.0))] if t >= 3.0 else [])

    first = drive(parking(), every(0.2, 0.0, 20.0), scene)
    replay = drive(parking(), every(0.2, 0.0, 20.0), scene)

    assert len(first) == 2
    assert [v.case_id for v in replay] == [v.case_id for v in first]


def test_candidates_show_dwell_progress_per_zone() -> None:
    engine = parking()
    drive(engine, every(0.5, 0.0, 4.0), lambda t: [Obj(3)])

    (candidate,) = engine.candidates()["lot"]
    assert candidate.track_id == 3 and candidate.dwell_s == 4.0 and not candidate.confirmed

    drive(engine, every(0.5, 4.5, 12.0), lambda t: [Obj(3)])
    assert engine.candidates()["lot"][0].confirmed


def test_pts_going_back_is_refused() -> None:
    engine = parking()
    drive(engine, [5.0], lambda t: [Obj(1)])

    with pytest.raises(ValueError, match="pts went back"):
        drive(engine, [4.0], lambda t: [Obj(1)])


def live_parking() -> RuleEngine:
    return RuleEngine(camera(("lot", LOT, {"type": "illegal_parking", "dwell_s": 10})), "live:cam",
                      wall_clock_ids=True)


def test_a_camera_taken_over_mid_dwell_files_its_car_once_from_the_first_sighting() -> None:
    # worker A sees the car for 6 s of its 10 s dwell and dies; worker B connects 12 s later (its own
    # stream clock starts at 0) and must finish the dwell, not start it again
    first = live_parking()
    assert drive(first, every(0.2, 50.0, 56.0), lambda t: [Obj(4)], wall_start=NOON) == []
    saved = json.loads(json.dumps(first.snapshot()))  # through JSON, as Redis keeps it

    second = live_parking()
    second.adopt(saved)
    violations = drive(second, every(0.2, 0.0, 20.0), lambda t: [Obj(9, (10.4, 20.0, 20.4, 30.0))],
                       wall_start=NOON + 68.0)

    (case,) = violations
    assert case.track_id == 9 and case.confirmed_s == pytest.approx(0.0)  # dwell already passed on B's first frame
    assert case.dwell_s == pytest.approx(18.0)  # from A's first sighting, across the blind 12 s
    assert case.case_id == parking_case_id_for(NOON + 50.0)


def test_a_case_filed_before_the_move_is_not_filed_again_by_the_next_worker() -> None:
    first = live_parking()
    (filed,) = drive(first, every(0.2, 0.0, 15.0), lambda t: [Obj(1)], wall_start=NOON)

    second = live_parking()
    second.adopt(first.snapshot())
    assert drive(second, every(0.2, 0.0, 60.0), lambda t: [Obj(5)], wall_start=NOON + 30.0) == []
    # the same car filed by a worker that knew nothing would get another id: the old one is kept
    assert filed.case_id == parking_case_id_for(NOON)


def test_live_case_ids_come_from_the_wall_clock_and_replays_from_the_stream_clock() -> None:
    live = drive(live_parking(), every(0.2, 0.0, 12.0), lambda t: [Obj(1)], wall_start=NOON)
    again = drive(live_parking(), every(0.2, 100.0, 112.0), lambda t: [Obj(1)], wall_start=NOON - 100.0)
    replayed = drive(parking(), every(0.2, 0.0, 12.0), lambda t: [Obj(1)], wall_start=NOON + 999.0)
    assert live[0].case_id == again[0].case_id  # same wall time, whatever the stream clock
    assert replayed[0].case_id == drive(parking(), every(0.2, 0.0, 12.0), lambda t: [Obj(1)])[0].case_id


def parking_case_id_for(first_seen_wall: float) -> str:
    return case_id("live:cam", "cam", "lot", "illegal_parking", first_seen_wall)


# --- non-motor vehicles: a heap is one case --------------------------------------------------

# Three e-bikes side by side on the sidewalk ("lot"), and a fourth that joins them later.
BIKES = [Obj(1, (8.0, 22.0, 14.0, 30.0)), Obj(2, (16.0, 22.0, 22.0, 30.0)), Obj(3, (24.0, 22.0, 30.0, 30.0))]
LATE_BIKE = Obj(4, (31.0, 22.0, 37.0, 30.0))


def bike_rule(**overrides: object) -> RuleEngine:
    rule = {"type": "nonmotor_parking", "dwell_s": 10, "min_count": 3, **overrides}
    return RuleEngine(camera(("lot", LOT, rule)), "test")


def as_bikes(objects: Sequence[Obj]) -> list[Obj]:
    return [Obj(o.track_id, o.box, Role.NON_MOTOR_VEHICLE) for o in objects]


def test_a_heap_of_bikes_is_one_case_boxed_around_the_heap() -> None:
    def heap(t: float) -> list[Obj]:
        # the heap grows, then its first bike is taken away for longer than the cool-down:
        # neither is a second case, the bikes still there belong to the first
        return as_bikes(BIKES[1 if t >= 40.0 else 0:] + ([LATE_BIKE] if t >= 5.0 else []))

    (case,) = drive(bike_rule(cooldown_s=10), every(0.5, 0.0, 80.0), heap)

    assert case.kind == "nonmotor_parking" and case.case_id.startswith("B-")
    assert case.track_id == 1 and case.first_seen_s == 0.0 and case.confirmed_s == 10.0
    assert case.bbox == (8.0, 22.0, 30.0, 30.0)  # the three bikes parked when it was filed


def test_bikes_fewer_than_min_count_are_no_case() -> None:
    violations = drive(bike_rule(), every(0.5, 0.0, 60.0), lambda t: as_bikes(BIKES[:2]))

    assert violations == []


def test_the_heap_is_filed_when_its_last_bike_has_dwelt() -> None:
    def growing(t: float) -> list[Obj]:
        return as_bikes(BIKES[:2] + ([BIKES[2]] if t >= 30.0 else []))

    (case,) = drive(bike_rule(), every(0.5, 0.0, 60.0), growing)

    assert case.track_id == 1 and case.first_seen_s == 0.0 and case.confirmed_s == 40.0


def test_a_new_heap_after_the_cool_down_is_a_second_case() -> None:
    def two_heaps(t: float) -> list[Obj]:
        return [] if 20.0 <= t < 60.0 else as_bikes(BIKES)

    violations = drive(bike_rule(cooldown_s=20), every(0.5, 0.0, 80.0), two_heaps)

    assert [v.first_seen_s for v in violations] == [0.0, 60.0]


def test_a_zones_chosen_event_entry_travels_with_its_cases() -> None:
    stall = {"type": "stall_encroachment", "dwell_s": 5}
    shop_spillover = {**stall, "event": "shop_spillover"}
    engine = RuleEngine(camera(("shopfront", LOT, shop_spillover), ("sidewalk", RIGHT_HALF, stall)), "test")
    east = (40.0, 10.0, 50.0, 20.0)

    violations = drive(engine, every(0.5, 0.0, 10.0), lambda t: [Obj(1, role=Role.STALL), Obj(2, east, Role.STALL)])

    entries = {v.zone_id: v.event_entry for v in violations}
    assert entries == {"shopfront": "shop_spillover", "sidewalk": "stall_encroachment"}
