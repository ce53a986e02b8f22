"""Two models per camera: COCO vehicles from YOLOX-nano beside the project's model for stalls, bins
and garbage, on the same batches; what the CLI refuses; what a case records of them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from review_support import PASSWORD, START_TIME, running_app
from support import (
    CAR_VIDEO,
    DEFAULT_MODEL,
    REPO,
    SAMPLE_CAMERA,
    SAMPLE_VIDEO,
    SHARED,
    expected_cases,
    heavy_fixture,
    match,
    remembering_patrol,
    sample_replay_once,
    short_street,
)

from pipeline.cli.main import main
from pipeline.config import load_camera
from pipeline.detect import Detector, DetectorSet, Member, load_card
from pipeline.engine import DetectorOptions, build_detector
from pipeline.types import Role

YOLOX = SHARED / "models" / "yolox_nano.onnx"
COCO_ROLES = ["vehicle", "non_motor_vehicle", "person"]
STREET_ROLES = ["stall", "bin", "overflowing_bin", "garbage_pile"]
TWO_MODELS = ["--model", f"{YOLOX}:{','.join(COCO_ROLES)}", "--model", f"{DEFAULT_MODEL}:{','.join(STREET_ROLES)}"]
# frames of the parking-lot video with cars in them (tests/data/detect/car-detection.labels.json)
CAR_FRAMES = (84, 208, 216, 332)

needs_shared = pytest.mark.skipif(not (YOLOX.is_file() and CAR_VIDEO.is_file()),
                                  reason=f"needs ../shared beside the repo: {YOLOX} and {CAR_VIDEO}")


def roles(names: list[str]) -> frozenset[Role]:
    return frozenset(Role(name) for name in names)


@pytest.fixture(scope="module")
def car_frames() -> list[np.ndarray]:
    frames = []
    with av.open(str(CAR_VIDEO)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in CAR_FRAMES:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == len(CAR_FRAMES):
                return frames
    raise AssertionError(f"{CAR_VIDEO} has fewer than {max(CAR_FRAMES) + 1} frames")


class RunCounter:
    """Counts a detector's batches (``infer``) and network runs (``run``) and the frames in each run."""

    def __init__(self, detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[int] = []
        self.runs: list[int] = []
        infer, run = detector.infer, detector.run

        def counted_infer(images):
            self.batches.append(len(images))
            return infer(images)

        def counted_run(prepared):
            self.runs.append(len(prepared.tensor))
            return run(prepared)

        monkeypatch.setattr(detector, "infer", counted_infer)
        monkeypatch.setattr(detector, "run", counted_run)


@needs_shared
def test_vehicles_come_only_from_yolox_and_each_model_takes_the_batch_once(car_frames, monkeypatch):
    # one run at a time, so a run of the whole batch is one run, whatever the machine's cores
    yolox, street = Detector(YOLOX, parallel_runs=1), Detector(DEFAULT_MODEL, parallel_runs=1)
    alone = {"yolox": yolox.detect(car_frames), "street": street.detect(car_frames)}
    assert sum(int((d.role == "vehicle").sum()) for d in alone["street"]) > 0, \
        "the project's model should see cars on these frames: else nothing here tells whose vehicles they are"

    both = DetectorSet([Member(yolox, roles(COCO_ROLES)), Member(street, roles(STREET_ROLES))])
    counters = {"yolox": RunCounter(yolox, monkeypatch), "street": RunCounter(street, monkeypatch)}
    found = both.detect(car_frames)

    assert counters["street"].batches == [len(car_frames)] and counters["street"].runs == [len(car_frames)]
    # YOLOX-nano's ONNX input is fixed at batch 1: it gets the whole batch once and runs it frame by frame
    assert counters["yolox"].batches == [len(car_frames)] and counters["yolox"].runs == [1] * len(car_frames)

    coco_classes = len(yolox.card.classes)
    vehicles = 0
    for got, from_yolox, from_street in zip(found, alone["yolox"], alone["street"], strict=True):
        is_vehicle = got.role == "vehicle"
        vehicles += int(is_vehicle.sum())
        assert (got.class_id[is_vehicle] < coco_classes).all()
        assert {both.classes[i] for i in got.class_id[is_vehicle]} <= {"car", "bus", "truck"}
        np.testing.assert_allclose(got.xyxy[is_vehicle], from_yolox.xyxy[from_yolox.role == "vehicle"], atol=1e-3)
        # the project model's stalls and bins come through, under its own class names
        street_roles = np.isin(got.role, STREET_ROLES)
        np.testing.assert_allclose(got.xyxy[street_roles], from_street.xyxy[np.isin(from_street.role, STREET_ROLES)],
                                   atol=1e-3)
        assert [both.classes[i] for i in got.class_id[street_roles]] == list(got.role[street_roles])
        assert set(got.role) <= {*COCO_ROLES, *STREET_ROLES}  # YOLOX's other 74 classes are dropped
    assert vehicles > 0, "YOLOX boxed no vehicle on these frames: the test shows nothing"


def test_one_model_alone_is_the_plain_detector_and_records_as_before():
    detector = build_detector(DetectorOptions())
    assert type(detector) is Detector and detector.model_path == DEFAULT_MODEL
    card = load_card(DEFAULT_MODEL)
    assert detector.model_record() == {"name": card.name, "sha256": card.sha256, "providers": detector.providers}


@needs_shared
@pytest.mark.parametrize(("models", "named"), [
    (["--model", f"{YOLOX}:vehicle,lorry"], ["--model", f"{YOLOX}:vehicle,lorry", "'lorry'", "garbage_pile"]),
    ([*TWO_MODELS, "--model", f"{DEFAULT_MODEL}:person"],
     ["--model", "role person", str(YOLOX), str(DEFAULT_MODEL)]),
    (["--model", str(DEFAULT_MODEL), "--model", f"{YOLOX}:vehicle"],  # without roles: all its card maps
     ["--model", "role vehicle", str(YOLOX), str(DEFAULT_MODEL)]),
    (["--model", f"{YOLOX}:stall,person"], ["--model", str(YOLOX), "yolox_nano", "maps no class to stall"]),
    (["--model", "nowhere.onnx:vehicle"], ["--model nowhere.onnx:vehicle", "no such file"]),
])
def test_bad_models_are_a_usage_error_naming_them(tmp_path, capsys, models, named):
    code = main(["replay", str(SAMPLE_VIDEO), "--camera", str(SAMPLE_CAMERA), "--out", str(tmp_path / "out"), *models])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("patrol replay: "), error
    for part in named:
        assert part in error, error
    assert not (tmp_path / "out" / "cases.jsonl").exists()


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> Path:
    """The sample's first 84 s: a parked car, the stall and the bin."""
    return short_street(tmp_path_factory.mktemp("street"))


@heavy_fixture(scope="module")
def two_model_replay(tmp_path_factory, street) -> Path:
    """``patrol replay`` with both models, their boxes remembered: the project's model's are those of
    the session's replay of the sample, whose first 84 s this is."""
    sample_replay_once(tmp_path_factory)
    out = tmp_path_factory.mktemp("two-models") / "out"
    done = subprocess.run([*remembering_patrol(tmp_path_factory), "replay", str(street),
                           "--camera", str(SAMPLE_CAMERA), "--out", str(out), "--start-time", START_TIME, *TWO_MODELS],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@needs_shared
def test_the_two_model_replay_still_files_the_stall_and_bin_cases(two_model_replay, street):
    cases = [json.loads(line) for line in (two_model_replay / "cases.jsonl").read_text().splitlines()]
    expected = expected_cases(load_camera(SAMPLE_CAMERA), street)
    matched, missing, extra = match(cases, expected)
    assert extra == []  # every case filed is a real episode
    assert {kind for kind, _, _ in missing} <= {"illegal_parking"}  # the parked cars are YOLOX's to see
    assert {(kind, zone) for (kind, zone, _), _ in matched} >= {("stall_encroachment", "sidewalk-north"),
                                                                ("bin_overflow", "bin-east")}


@needs_shared
def test_each_case_records_both_models_and_the_review_page_shows_them(two_model_replay):
    street = load_card(DEFAULT_MODEL)
    cards = {"yolox_nano": (load_card(YOLOX), COCO_ROLES), street.name: (street, STREET_ROLES)}
    cases = [json.loads(line) for line in (two_model_replay / "cases.jsonl").read_text().splitlines()]
    assert cases
    for case in cases:
        model = json.loads(Path(case["evidence"]["metadata.json"]).read_text())["model"]
        assert model["name"] == f"yolox_nano+{street.name}" and len(model["sha256"]) == 64
        assert [member["name"] for member in model["members"]] == list(cards)
        for member in model["members"]:
            card, taken = cards[member["name"]]
            assert member["sha256"] == card.sha256 and member["roles"] == taken and member["providers"]

    with running_app(two_model_replay) as client:
        assert client.post("/login", data={"name": "officer1", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
        page = client.get(f"/cases/{cases[0]['case_id']}")
    assert page.status_code == 200
    shown = page.text.split('id="model">')[1].split("</dd>")[0]
    assert shown == (f"yolox_nano（vehicle, non_motor_vehicle, person）<br>"
                     f"{street.name}（stall, bin, overflowing_bin, garbage_pile）")
