"""The pieces of `patrol train` / `patrol eval` that need no training: the dataset spec, the mix,
the mAP arithmetic, event scoring, and the parking-lot frames put back in order."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import REPO

from pipeline.config import CameraConfig, load_camera
from pipeline.synth import render_dataset
from pipeline.synth.actors import CLASSES
from pipeline.train.evaluate import ImageResult, match_image, summarise
from pipeline.train.events import TruthEpisode, score_cases
from pipeline.train.mix import build_mix, draw
from pipeline.train.sources import open_sources
from pipeline.train.spec import SpecError, load_spec

STREET_SPEC = REPO / "annotations" / "datasets" / "street.yaml"


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def test_the_shipped_spec_is_valid_and_maps_every_source_into_project_classes(shared):
    loaded = load_spec(STREET_SPEC)
    assert loaded.spec.val == "synthetic"
    for name, source in loaded.spec.sources.items():
        assert set((source.classes or {}).values()) <= set(CLASSES), name


@pytest.mark.parametrize("text, field, reason", [
    ("name: x\nval: a\nsources:\n  a: {path: ., classes: {car: vehicel}}\n", "sources.a.classes", "vehicel"),
    ("name: x\nval: b\nsources:\n  a: {path: .}\n", "(top level)", "'b' is not one of the sources"),
    ("name: x\nval: a\nsources:\n  a: {path: ., count: 3, weight: 2}\n", "sources.a", "count or weight"),
    ("name: x\nval: a\nsources:\n  a: {path: ., wieght: 2}\n", "sources.a.wieght", "unknown key"),
    ("name: x\nval: a\nsources:\n  A B: {path: .}\n", "sources.A B.[key]", "pattern"),
    ("name: x\nval: a\nsources:\n  a: {path: ., classes: {bag: garbage_pile}, teach: [person]}\n", "(top level)",
     "there is no teacher"),
    ("name: x\nval: a\nteacher: {model: t.onnx}\nsources:\n  a: {path: ., classes: {bag: garbage_pile}, "
     "teach: [garbage_pile]}\n", "sources.a", "labelled by the source itself"),
])
def test_a_bad_spec_names_the_file_and_the_field(tmp_path, text, field, reason):
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value) and f"{field}:" in str(error.value) and reason in str(error.value)


def test_a_source_class_the_source_does_not_have_is_named(tmp_path):
    (tmp_path / "set" / "train" / "images").mkdir(parents=True)
    (tmp_path / "set" / "data.yaml").write_text("names: ['empty', 'occupied']\n")
    path = write_spec(tmp_path, "name: x\nval: s\nsources:\n  s: {path: set, classes: {parked: vehicle}}\n")
    with pytest.raises(SpecError, match=r"sources\.s\.classes: \['parked'\] are not classes"):
        open_sources(load_spec(path))


def test_a_missing_optional_source_is_left_out_and_a_required_one_is_an_error(tmp_path):
    render_dataset(tmp_path / "synth", 6, seed=1, val_fraction=0.5, sizes=((96, 64),), progress=False)
    spec = "name: x\nval: synth\nsources:\n  synth: {path: synth, holdout: val}\n  later: {path: none, optional: %s}\n"
    assert set(open_sources(load_spec(write_spec(tmp_path, spec % "true")))) == {"synth"}
    with pytest.raises(SpecError, match=r"sources\.later\.path: no such folder"):
        open_sources(load_spec(write_spec(tmp_path, spec % "false")))


def test_eval_renders_exactly_the_held_out_scenes_of_a_synthetic_recipe(tmp_path):
    spec = "name: x\nval: s\nsources:\n  s: {path: s, holdout: val, render: {count: 8, seed: 4, val_fraction: 0.25}}\n"
    path = write_spec(tmp_path, spec)
    held_out = open_sources(load_spec(path), holdout_only_in=tmp_path / "eval")["s"].holdout_images()
    full = open_sources(load_spec(path))["s"].holdout_images()  # renders all 8 into tmp_path / "s"
    assert [p.name for p in held_out] == [p.name for p in full] and len(full) == 2
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(held_out, full, strict=True))


def test_the_mix_draws_counts_and_weights_and_links_labels_in_project_classes(tmp_path, shared):
    render_dataset(tmp_path / "synth", 6, seed=2, val_fraction=0.5, sizes=((96, 64),), progress=False)
    parking = shared / "datasets" / "parking-lot-cam"
    path = write_spec(tmp_path, f"""\
name: x
val: synth
sources:
  synth: {{path: synth, holdout: val, weight: 2.0}}
  lot: {{path: {parking}, classes: {{occupied: vehicle}}, count: 5}}
""")
    loaded = load_spec(path)
    counts = build_mix(loaded, open_sources(loaded), tmp_path / "mix")
    assert counts == {"synth": 6, "lot": 5}
    assert len(list((tmp_path / "mix" / "train" / "synth" / "images").iterdir())) == 6  # 3 images, each twice
    lot_labels = list((tmp_path / "mix" / "train" / "lot" / "labels").glob("*.txt"))
    classes = {line.split()[0] for label in lot_labels for line in label.read_text().splitlines()}
    assert classes == {str(CLASSES.index("vehicle"))}
    assert (tmp_path / "mix" / "holdout-lot.yaml").is_file() and (tmp_path / "mix" / "data.yaml").is_file()


@pytest.mark.heavy
def test_a_teacher_labels_what_a_source_leaves_out_in_training_images_only(tmp_path, shared):
    """Garbage-bag photos with a car or a person in them: the COCO teacher's boxes join the bags in
    the training mix, never in the held-out split the model is measured on."""
    bags = shared / "datasets" / "trash-bags"
    path = write_spec(tmp_path, f"""\
name: x
val: bags
teacher: {{model: {shared / "models" / "yolov8n_coco_640.onnx"}, conf: 0.4}}
sources:
  bags: {{path: {bags}, classes: {{general_trashbag: garbage_pile, other_trashbag: garbage_pile}}, count: 40,
         teach: [vehicle, non_motor_vehicle, person]}}
""")
    loaded = load_spec(path)
    from pipeline.train.teacher import Teacher

    teacher = Teacher(loaded.teacher_model(), conf=0.4, cache=tmp_path / "cache")
    build_mix(loaded, open_sources(loaded), tmp_path / "mix", teacher=teacher)
    taught = {str(CLASSES.index(c)) for c in ("vehicle", "non_motor_vehicle", "person")}

    def classes_in(split: str) -> set[str]:
        labels = (tmp_path / "mix" / split / "bags" / "labels").glob("*.txt")
        return {line.split()[0] for label in labels for line in label.read_text().splitlines()}

    assert classes_in("train") & taught, "the teacher should box someone or something in 40 street-side photos"
    assert str(CLASSES.index("garbage_pile")) in classes_in("train")
    assert not classes_in("holdout") & taught
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert cached, "the teacher's labels are cached for the next run"


def test_a_mix_without_the_teacher_its_spec_names_is_refused(tmp_path, shared):
    path = write_spec(tmp_path, f"""\
name: x
val: bags
teacher: {{model: {shared / "models" / "yolov8n_coco_640.onnx"}}}
sources:
  bags: {{path: {shared / "datasets" / "trash-bags"}, classes: {{general_trashbag: garbage_pile}}, count: 2,
         teach: [person]}}
""")
    loaded = load_spec(path)
    with pytest.raises(SpecError, match=r"sources\.bags\.teach: there is no teacher"):
        build_mix(loaded, open_sources(loaded), tmp_path / "mix")


@pytest.mark.heavy
def test_plates_are_read_through_the_detectors_vehicle_box_as_a_case_reads_them(shared):
    """The COCO detector's vehicle boxes on ccpd-plates: the plate is read in the box's crop; a photo
    whose plate no vehicle box holds is a plate not read, however well the reader alone does."""
    from pipeline.detect import Detector
    from pipeline.train.plates import evaluate_plates

    result = evaluate_plates(Detector(shared / "models" / "yolov8n_coco_640.onnx", parallel_runs=1),
                             shared / "datasets" / "ccpd-plates")
    assert result["images"] == 16 and result["reader_alone"] >= 15
    assert result["exact"] <= result["vehicle_found"] < 16
    assert sum(miss["read"] == "no vehicle" for miss in result["misses"]) == 16 - result["vehicle_found"]


def test_draw_repeats_whole_passes_before_sampling_the_rest():
    images = [Path(f"{i}.jpg") for i in range(4)]
    drawn = draw(images, 10, random.Random(0))
    assert len(drawn) == 10 and all(drawn.count(image) in (2, 3) for image in images)


def _result(pred: list, labels: list) -> ImageResult:
    pred_xyxy = np.array([p[:4] for p in pred], float).reshape(-1, 4)
    label_xyxy = np.array([lb[:4] for lb in labels], float).reshape(-1, 4)
    pred_class = np.array([p[5] for p in pred], int)
    label_class = np.array([lb[4] for lb in labels], int)
    return ImageResult(correct=match_image(pred_xyxy, pred_class, label_xyxy, label_class),
                       score=np.array([p[4] for p in pred], float), predicted_class=pred_class,
                       label_class=label_class)


def test_perfect_boxes_score_full_map_and_a_wrong_class_scores_none():
    labels = [(10, 10, 50, 50, 0), (60, 60, 90, 90, 0)]
    perfect = _result([(*b[:4], 0.9, 0) for b in labels], labels)
    summary = summarise([perfect], ["vehicle"])
    assert summary["mAP50"] == summary["mAP50-95"] == pytest.approx(0.995, abs=1e-3)  # ultralytics' 101-point AP
    wrong_class = _result([(*b[:4], 0.9, 2) for b in labels], labels)
    assert summarise([wrong_class], ["vehicle"])["mAP50"] == 0.0


def test_a_loose_box_counts_at_low_iou_thresholds_only():
    shifted = _result([(10, 10, 50, 60, 0.9, 0)], [(10, 10, 50, 50, 0)])  # IoU 0.8
    summary = summarise([shifted], ["vehicle"])
    assert summary["mAP50"] == pytest.approx(0.995, abs=1e-3)
    assert summary["mAP50-95"] == pytest.approx(0.995 * 7 / 10, abs=1e-3)  # thresholds 0.5 .. 0.8


def test_a_false_positive_ranked_first_halves_precision_at_the_first_hit():
    result = _result([(200, 200, 240, 240, 0.95, 0), (10, 10, 50, 50, 0.9, 0)], [(10, 10, 50, 50, 0)])
    assert summarise([result], ["vehicle"])["mAP50"] == pytest.approx(0.5, abs=0.01)


def _camera(dwell_s: float = 10) -> CameraConfig:
    return CameraConfig.model_validate({
        "id": "c", "name": "c", "url": "x.mp4", "location": {"lat": 0, "lon": 0},
        "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                   "rules": [{"type": "illegal_parking", "dwell_s": dwell_s}]}],
    })


def _case(confirmed_s: float, bbox=(0, 0, 10, 10), zone: str = "z") -> dict:
    return {"case_id": f"P-{confirmed_s}", "violation": "illegal_parking", "zone_id": zone,
            "confirmed_s": confirmed_s, "bbox": list(bbox)}


def test_event_scoring_counts_matches_duplicates_false_positives_and_misses():
    episodes = [TruthEpisode("illegal_parking", "z", 0, 30, (0, 0, 10, 10)),
                TruthEpisode("illegal_parking", "z", 40, 80, (50, 50, 60, 60)),
                TruthEpisode("illegal_parking", "z", 90, 95, (0, 0, 10, 10))]  # shorter than the dwell
    cases = [_case(10.5), _case(25.0),  # the first car, then filed again: a duplicate
             _case(51.0, (0, 0, 10, 10)),  # at the time of the second car but not where it stands
             _case(60.0, zone="other")]
    scored = score_cases(cases, episodes, _camera())
    assert (scored["episodes"], scored["cases"], scored["matched"]) == (2, 4, 1)
    assert (scored["duplicates"], scored["false_positives"], scored["missed"]) == (1, 2, 1)
    assert scored["precision"] == 0.25 and scored["recall"] == 0.5


def test_the_parking_lot_frames_as_taken_are_one_per_frame_index_in_order(shared):
    from pipeline.train.parking_lot import frames_as_taken, parking_truth
    from pipeline.train.spec import DatasetSpec, LoadedSpec

    root = shared / "datasets" / "parking-lot-cam"
    frames = frames_as_taken(root)
    indices = {int(p.name.split("_mp4-")[1].split("_")[0]) for p in root.glob("*/images/*.jpg")}
    assert [f.index for f in frames] == sorted(indices)
    valid = {p.name for p in (root / "valid" / "images").glob("*.jpg")}
    assert valid <= {f.path.name for f in frames}  # valid frames are all as taken
    sizes = {cv2.imread(str(f.path)).shape for f in frames}
    assert len(sizes) == 1

    loaded = LoadedSpec(root / "spec.yaml", DatasetSpec.model_validate(
        {"name": "p", "val": "lot", "sources": {"lot": {"path": ".", "classes": {"occupied": "vehicle"}}}}))
    camera = load_camera(REPO / "annotations" / "eval" / "parking-lot-cam.yaml")
    truth = parking_truth(open_sources(loaded)["lot"], frames, camera)
    assert {e.zone_id for e in truth} == {zone.id for zone in camera.zones}
    assert all(0 <= e.start_s < e.end_s <= len(frames) for e in truth)


@pytest.mark.heavy
def test_the_road_video_labeller_agrees_with_boxes_drawn_by_hand(shared):
    """annotations/tools/static_camera_labels.py against the hand-drawn cars of tests/data/detect."""
    import json
    import sys

    sys.path.insert(0, str(REPO / "annotations" / "tools"))
    from static_camera_labels import decode, propose

    from pipeline.rules.boxes import box_iou

    frames = decode(shared / "videos" / "car-detection.mp4")
    background = np.median(np.stack(frames), axis=0).astype(np.float32)
    hand = json.loads((REPO / "tests" / "data" / "detect" / "car-detection.labels.json").read_text())["frames"]
    for index, boxes in hand.items():
        proposed = np.array(propose(frames[int(index)], background), float).reshape(-1, 4)
        iou = box_iou(np.array(boxes, float), proposed)
        assert len(proposed) == len(boxes), f"frame {index}: {proposed.tolist()} against {boxes}"
        assert iou.max(axis=1).min() >= 0.8, f"frame {index}: {proposed.tolist()} against {boxes}"


@pytest.mark.heavy
def test_a_coco_model_is_measured_on_the_road_video_through_its_cards_roles(shared, tmp_path):
    """YOLOX-nano calls cars seen from above car, bus or truck: its card maps them all to vehicle."""
    from pipeline.detect import Detector
    from pipeline.train.evaluate import EVAL_CONF, evaluate_video_labels
    from pipeline.train.report import LABELLED_VIDEOS

    video, labels = LABELLED_VIDEOS["road-video"]
    detector = Detector(shared / "models" / "yolox_nano.onnx", conf_threshold=EVAL_CONF)
    result = evaluate_video_labels(detector, video, labels)
    assert result["images"] == 31 and result["per_class"]["vehicle"]["instances"] == 28
    assert result["mAP50"] > 0.3


def test_the_hand_labelled_street_garbage_part_is_the_stable_held_out_part_and_well_formed(shared):
    """The labels cover exactly the photos the stable name hash holds out (so a spec holding out the
    same share never trains on them), and every box is inside its photo."""
    import hashlib
    import json

    from pipeline.train.report import LABELLED_PHOTOS

    doc = json.loads(LABELLED_PHOTOS["street-garbage-amsterdam"].read_text(encoding="utf-8"))
    folder = REPO / doc["photos"]
    held_out = {p.name for p in folder.iterdir()
                if int.from_bytes(hashlib.sha256(p.name.encode()).digest()[:4], "big") / 2**32 < 0.12}
    assert set(doc["images"]) == held_out and len(held_out) == 23
    for name, boxes in doc["images"].items():
        for cls, x1, y1, x2, y2 in boxes:
            assert cls in doc["classes"] and 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, name


def test_photos_labelled_by_hand_are_measured_per_class(shared):
    import json

    from pipeline.detect import Detector
    from pipeline.train.evaluate import EVAL_CONF, evaluate_photo_labels
    from pipeline.train.report import LABELLED_PHOTOS

    labels = LABELLED_PHOTOS["street-garbage-amsterdam"]
    boxes = [b for bs in json.loads(labels.read_text(encoding="utf-8"))["images"].values() for b in bs]
    result = evaluate_photo_labels(Detector(REPO / "models" / "patrol-street.onnx", conf_threshold=EVAL_CONF), labels)
    assert result["images"] == 23
    assert {c: v["instances"] for c, v in result["per_class"].items()} == \
        {c: sum(b[0] == c for b in boxes) for c in ("garbage_pile", "bin", "overflowing_bin")}


def test_cars_added_by_hand_to_the_parking_truth_stand_in_their_zone():
    from pipeline.rules.zone_mask import ZoneMask
    from pipeline.train.report import PARKING_CAMERA, PARKING_UNLABELLED, unlabelled_cars

    camera = load_camera(PARKING_CAMERA)
    zones = {zone.id: zone for zone in camera.zones}
    for episode in unlabelled_cars(PARKING_UNLABELLED):
        assert episode.kind == "illegal_parking" and episode.end_s > episode.start_s
        inside = ZoneMask(zones[episode.zone_id]).bottom_centres_inside(np.array([episode.box]), (854, 480))
        assert inside.all(), episode
