"""The model learns from officers: the gate that judges a candidate against its parent, then the
whole loop at toy size: reviewed cases exported from a review store → `patrol retrain` of a toy
parent (one epoch at 64 px) → the gate's record and the card's lineage → `patrol shadow` of the
accepted candidate beside the live model → `patrol promote`.
ultralytics is in the `test` extra: nothing here skips."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from queue_contract import make_record
from support import DEFAULT_MODEL, SAMPLE_VIDEO, camera_file, cut_video, heavy_fixture

from pipeline.cli.main import main as cli_main
from pipeline.config import Workspace
from pipeline.detect import load_card
from pipeline.detect.card import sha256_file
from pipeline.evidence import LocalEvidenceStore
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import AccountRole, Decision, RejectReason
from pipeline.synth import render_dataset
from pipeline.synth.actors import CLASSES
from pipeline.train.evaluate import ImageResult, MeasuredSet, map50, match_image
from pipeline.train.gate import Evaluation, GateResult, Verdict, judge

VEHICLE = CLASSES.index("vehicle")
LABEL = np.array([[10.0, 10.0, 50.0, 50.0]])
ELSEWHERE = np.array([[60.0, 60.0, 90.0, 90.0]])
PARKING_LOT = {"episodes": 17, "cases": 17, "matched": 17, "duplicates": 0, "false_positives": 0}


def patrol(*argv: object) -> int:
    return cli_main([str(arg) for arg in argv])


# ---- the gate, on made-up per-image results ----


def image(hit: bool, score: float) -> ImageResult:
    """One vehicle labelled, one prediction: on it, or beside it."""
    predicted = LABEL if hit else ELSEWHERE
    classes = np.array([VEHICLE])
    return ImageResult(correct=match_image(predicted, classes, LABEL, classes), score=np.array([score]),
                       predicted_class=classes, label_class=classes)


def measured(hits: list[bool]) -> MeasuredSet:
    """Scores falling image by image, so that the ranking has no ties."""
    return MeasuredSet(["vehicle"], [image(hit, 0.9 - 0.01 * i) for i, hit in enumerate(hits)])


def evaluation(name: str, sets: dict[str, MeasuredSet], events: dict | None = None) -> Evaluation:
    report = {"model": {"name": name, "sha256": name[0] * 64}, "events": events or {}, "plates": {},
              "holdout": {set_name: result.summary() for set_name, result in sets.items()}}
    return Evaluation(report, sets)


def test_a_candidate_equal_to_its_parent_passes():
    sets = {"road-video": measured([True] * 20 + [False] * 5), "synthetic": measured([True] * 10)}
    gate = judge(evaluation("parent", sets), evaluation("candidate", sets), synthetic_sets=frozenset({"synthetic"}))
    assert gate.accepted and gate.refused_by == []
    assert [(s.name, s.verdict, s.interval) for s in gate.sets] == [
        ("road-video", Verdict.NOISE, (0.0, 0.0)), ("synthetic", Verdict.NOISE, (0.0, 0.0))]
    assert "accepted: no real set lost beyond noise" in gate.table()
    road = sets["road-video"]
    assert map50(road.images, road.classes) == road.summary()["mAP50"] == 0.879  # what the bootstrap recomputes


def test_a_candidate_that_clearly_drops_a_real_set_is_refused_naming_it():
    parent = {"road-video": measured([True] * 30), "trash-bags": measured([True] * 10)}
    candidate = {"road-video": measured([True] * 10 + [False] * 20), "trash-bags": measured([True] * 10)}
    gate = judge(evaluation("parent", parent), evaluation("candidate", candidate))
    assert not gate.accepted and gate.refused_by == ["road-video"]
    road = gate.sets[0]
    assert road.verdict is Verdict.LOST and road.interval[1] < 0 and road.delta()["mAP50"] < -0.5
    table = gate.table()
    assert "refused: road-video lost beyond noise" in table
    row = next(line for line in table.splitlines() if line.startswith("| road-video |"))
    assert "| real |" in row and "**lost beyond noise**" in row and "0.9950" in row
    assert GateResult.from_dict(json.loads(json.dumps(gate.to_dict()))) == gate  # the record reads back whole


def test_a_tiny_noisy_difference_passes():
    """One image of thirty missed: lower, but the interval reaches zero."""
    parent = measured([True] * 28 + [False] * 2)
    candidate = measured([False] + [True] * 27 + [False] * 2)
    gate = judge(evaluation("parent", {"road-video": parent}), evaluation("candidate", {"road-video": candidate}))
    (road,) = gate.sets
    assert road.delta()["mAP50"] < 0 and road.interval[0] < 0 <= road.interval[1]
    assert road.verdict is Verdict.NOISE and gate.accepted


def test_a_loss_on_synthetic_sets_only_does_not_refuse():
    parent = {"synthetic": measured([True] * 30), "road-video": measured([True] * 10)}
    candidate = {"synthetic": measured([False] * 30), "road-video": measured([True] * 10)}
    synthetic_duplicate = {"sample-street": {**PARKING_LOT, "duplicates": 1}}
    gate = judge(evaluation("parent", parent, {"sample-street": PARKING_LOT}),
                 evaluation("candidate", candidate, synthetic_duplicate), synthetic_sets=frozenset({"synthetic"}))
    assert gate.accepted
    assert {s.name: (s.real, s.verdict) for s in gate.sets} == {
        "synthetic": (False, Verdict.LOST), "road-video": (True, Verdict.NOISE),
        "events sample-street": (False, Verdict.LOST)}
    assert "| synthetic | synthetic: reported, never decides |" in gate.table()
    assert "Only real sets decide" in gate.table()


@pytest.mark.parametrize("change, refuses", [
    ({"duplicates": 1}, True), ({"matched": 16}, True), ({"false_positives": 1}, True), ({}, False),
    ({"cases": 18}, False)])  # one case more that is no duplicate nor false positive: nothing lost
def test_an_event_video_loss_is_any_count_the_wrong_way(change, refuses):
    sets = {"road-video": measured([True] * 5)}
    gate = judge(evaluation("parent", sets, {"parking-lot-cam": PARKING_LOT}),
                 evaluation("candidate", sets, {"parking-lot-cam": {**PARKING_LOT, **change}}))
    assert gate.refused_by == (["events parking-lot-cam"] if refuses else [])
    events = gate.sets[1]
    assert events.name == "events parking-lot-cam" and events.interval is None
    assert (events.verdict is Verdict.LOST) == refuses


def test_a_candidate_measured_on_other_images_cannot_be_judged():
    with pytest.raises(ValueError, match="road-video: the two models were not measured on the same"):
        judge(evaluation("parent", {"road-video": measured([True] * 5)}),
              evaluation("candidate", {"road-video": measured([True] * 6)}))


# ---- the loop at toy size ----


SPEC = """\
name: toy
val: synthetic
sources:
  synthetic:
    path: synth
    render: {count: 10, seed: 3, val_fraction: 0.2}
    licence: Apache-2.0
    attribution: toy scenes
    train: train
    holdout: val
  street-cam: {path: street-cam, train: train, holdout: val, licence: CC0, attribution: the toy's 'real' camera}
  reviewed:
    path: reviewed
    optional: true
    train: .
    holdout: null
    holdout_fraction: 0.5
    licence: the city's own footage
    attribution: officer-reviewed cases
"""


def export_reviewed_cases(root: Path) -> Path:
    """Six cases on drawn street frames, filed in a review store: four confirmed, two rejected
    as 误检, one rejected as authorised; then `patrol dataset export` of them."""
    render_dataset(root / "frames", 7, seed=5, val_fraction=0.01, sizes=((320, 240),), progress=False)
    evidence = LocalEvidenceStore(root / "evidence")
    store = ReviewStore(root / "review.sqlite3")
    try:
        officer = store.accounts.add_user("officer1", AccountRole.OFFICER, "unused", actor="test")
        decisions = [{}] * 4 + [{"reason": RejectReason.DETECTOR_ERROR}] * 2 + [{"reason": RejectReason.AUTHORISED}]
        for index, (frame, decided) in enumerate(zip(vehicle_frames(root / "frames"), decisions, strict=False)):
            path, box = frame
            record = make_record(index)
            stored = evidence.put(f"{record.case_id}/frame.jpg", path.read_bytes(), "image/jpeg")
            store.cases.receive(replace(record, bbox=box, evidence={"frame.jpg": stored}))
            store.cases.decide(record.case_id, officer, Decision.REJECT if decided else Decision.CONFIRM, **decided)
    finally:
        store.close()
    out = root / "export"
    assert patrol("dataset", "export", "--since", "2000-01-01", "--out", out, "--db", root / "review.sqlite3",
                  "--evidence", root / "evidence") == 0
    return out


def vehicle_frames(folder: Path):
    """(frame, its largest vehicle's xyxy pixel box) of the drawn frames that show one."""
    for path in sorted((folder / "train" / "images").glob("*.jpg")):
        lines = (folder / "train" / "labels" / f"{path.stem}.txt").read_text().split("\n")
        boxes = [[float(v) for v in line.split()[1:]] for line in lines if line.split()[:1] == [str(VEHICLE)]]
        if boxes:
            cx, cy, w, h = max(boxes, key=lambda b: b[2] * b[3])
            yield path, (320 * (cx - w / 2), 240 * (cy - h / 2), 320 * (cx + w / 2), 240 * (cy + h / 2))


@heavy_fixture(scope="module")
def toy(tmp_path_factory):
    import ultralytics  # noqa: F401 — the test extra installs it; a missing one is an error, not a skip

    root = tmp_path_factory.mktemp("retrain")
    render_dataset(root / "synth", 10, seed=3, val_fraction=0.2, sizes=((128, 96),), progress=False)
    render_dataset(root / "street-cam", 6, seed=11, val_fraction=0.5, sizes=((128, 96),), progress=False)
    (root / "toy.yaml").write_text(SPEC)
    parent = root / "parent.onnx"
    assert patrol("train", root / "toy.yaml", "--out", parent, "--work", root / "work-parent", "--epochs", "1",
                  "--imgsz", "64", "--batch", "4") == 0
    return root, parent, export_reviewed_cases(root)


@heavy_fixture(scope="module")
def retrained(toy):
    root, parent, export = toy
    candidate = root / "candidate.onnx"
    code = patrol("retrain", "--reviewed", export, "--parent", parent, "--spec", root / "toy.yaml", "--out",
                  candidate, "--work", root / "work-retrain", "--epochs", "1", "--batch", "4",
                  "--sets", "synthetic", "street-cam", "reviewed", "--events")
    return root, parent, export, candidate, code


@heavy_fixture(scope="module")
def refused(toy):
    """A retrain judged on a set labelled with the parent's own boxes: the parent is perfect there,
    and a candidate that has learnt anything since cannot keep up."""
    root, parent, export = toy
    judged_by_parent = root / "parents-own"
    shutil.copytree(root / "synth" / "train", judged_by_parent / "train")
    label_with_model(parent, sorted((root / "street-cam" / "val" / "images").glob("*.jpg")), judged_by_parent / "val")
    spec = root / "judged-by-parent.yaml"
    spec.write_text(SPEC + "  parents-own: {path: parents-own, train: train, holdout: val}\n")
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = patrol("retrain", "--reviewed", export, "--parent", parent, "--spec", spec, "--out",
                      root / "refused.onnx", "--work", root / "work-refused", "--epochs", "1", "--batch", "4",
                      "--sets", "parents-own", "street-cam", "--events")
    return root, root / "refused.onnx", code, said.getvalue()


def label_with_model(model: Path, images: list[Path], out: Path) -> None:
    """``images`` in a YOLO split under ``out``, labelled with every box ``model`` finds in them."""
    import cv2

    from pipeline.detect import Detector
    from pipeline.train.evaluate import EVAL_CONF, EVAL_NMS_IOU

    detector = Detector(model, conf_threshold=EVAL_CONF, iou_threshold=EVAL_NMS_IOU)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for path in images:
        picture = cv2.imread(str(path))
        height, width = picture.shape[:2]
        found = detector.detect([picture])[0]
        lines = [f"{CLASSES.index(role)} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} "
                 f"{(y2 - y1) / height}" for (x1, y1, x2, y2), role in zip(found.xyxy, found.role, strict=True)
                 if role in CLASSES]
        assert lines, f"{model} finds nothing in {path}"
        shutil.copyfile(path, out / "images" / path.name)
        (out / "labels" / f"{path.stem}.txt").write_text("\n".join(lines) + "\n")


def test_the_export_holds_the_officers_positives_and_hard_negatives(toy):
    _, _, export = toy
    manifest = [json.loads(line) for line in (export / "manifest.jsonl").read_text().splitlines()]
    assert sorted(row["kind"] for row in manifest) == ["hard_negative"] * 2 + ["positive"] * 4


def test_retrain_judges_the_candidate_and_writes_its_lineage_into_its_card(retrained):
    root, parent, export, candidate, code = retrained
    assert code == 0
    record = json.loads((root / "candidate.gate.json").read_text())
    assert record["accepted"] and record["parent"]["sha256"] == sha256_file(parent)
    assert record["candidate"]["sha256"] == sha256_file(candidate)
    assert {s["name"]: s["real"] for s in record["sets"]} == {"synthetic": False, "street-cam": True,
                                                              "reviewed": True}
    assert "| street-cam | real | mAP50 |" in (root / "candidate.gate.md").read_text()
    card = load_card(candidate)
    lineage = card.metrics["lineage"]
    assert lineage["parent"] == {"name": "parent", "file": str(parent), "sha256": sha256_file(parent)}
    assert lineage["reviewed"] == {"folder": str(export), "positives": 4, "hard_negatives": 2,
                                   "manifest_sha256": sha256_file(export / "manifest.jsonl")}
    assert lineage["train_images"]["reviewed"] > 0 and lineage["gate"]["accepted"]
    assert card.classes == load_card(parent).classes and card.input.width == 64  # its parent's classes and size
    assert set(card.metrics["holdout"]) == {"synthetic", "street-cam", "reviewed"}
    assert "4 confirmed (positives), 2 rejected as 误检 (hard negatives)" in card.data


def test_the_parents_evaluation_is_kept_for_the_next_retrain_of_the_same_weights(retrained, monkeypatch):
    from pipeline.cli import model_verbs
    from pipeline.cli.model_verbs import eval_plan
    from pipeline.cli.retrain_verbs import _parent_evaluation, _with_reviewed
    from pipeline.train.spec import load_spec

    root, parent, export, candidate, _ = retrained
    work = root / "work-retrain"
    plan = eval_plan(_with_reviewed(load_spec(root / "toy.yaml"), export), work=work / "eval-work",
                     sets=["synthetic", "street-cam", "reviewed"], events=[])

    def measure_again(*_args, **_kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(model_verbs, "evaluate_planned", measure_again)
    cached = _parent_evaluation(parent, plan, work / "parent-eval")
    assert cached.report["model"]["sha256"] == sha256_file(parent)
    assert {name: s.summary() for name, s in cached.held_out.items()} == cached.report["holdout"]
    with pytest.raises(AssertionError, match="measured again"):
        _parent_evaluation(candidate, plan, work / "parent-eval")  # other weights: not from the cache


def test_an_accepted_candidate_is_shadowed_beside_the_live_model_and_files_nothing(retrained, tmp_path):
    root, _, _, candidate, code = retrained
    assert code == 0
    clip = cut_video(SAMPLE_VIDEO, tmp_path / "clip.mp4", seconds=14.0)  # the first parked car, at a 2 s dwell
    camera = camera_file(tmp_path / "camera.yaml", dwell_s=2.0)
    out = tmp_path / "shadow"
    assert patrol("shadow", clip, "--camera", camera, "--candidate", candidate, "--model", DEFAULT_MODEL,
                  "--out", out) == 0
    report = json.loads((out / "shadow.json").read_text())
    filed = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert filed and report["candidate_model"]["sha256"] == sha256_file(candidate)
    counts = report["counts"]
    assert counts["both"] + counts["live_only"] == len(filed)  # every live case is accounted for
    with sqlite3.connect(Workspace(out).queue_db) as db:  # the queue holds the live model's cases only
        assert {row[0] for row in db.execute("select case_id from cases")} == {c["case_id"] for c in filed}


def test_promote_refuses_a_stale_candidate_and_replaces_the_current_parent_keeping_it(retrained, tmp_path, capsys):
    root, parent, _, candidate, _ = retrained
    models = tmp_path / "models"
    models.mkdir()
    target, int8 = models / "patrol-street.onnx", models / "patrol-street-int8.onnx"
    assert patrol("export", parent, "--half", "--out", target) == 0  # a newer default than the candidate's parent
    newer = sha256_file(target)
    assert patrol("promote", candidate, "--to", target) == 2
    assert "the default changed since" in capsys.readouterr().err
    assert sha256_file(target) == newer and not (models / "LINEAGE.jsonl").exists()

    shutil.copyfile(parent, target)  # the default is the very parent the candidate was judged against
    shutil.copyfile(parent.with_suffix(".card.yaml"), models / "patrol-street.card.yaml")
    assert patrol("export", target, "--int8", "--out", int8, "--calibration", SAMPLE_VIDEO,
                  "--calibration-frames", "1") == 0  # and its INT8 runtime copy
    capsys.readouterr()
    assert patrol("promote", candidate, "--to", target) == 0
    assert f"{int8} is still the INT8 copy of an earlier model" in capsys.readouterr().err
    promoted = load_card(target)
    assert promoted.sha256 == sha256_file(candidate) and promoted.name == "patrol-street"
    assert promoted.metrics["lineage"]["parent"]["sha256"] == sha256_file(parent)
    assert promoted.metrics["lineage"]["promoted_at"]
    previous = models / "patrol-street.previous.onnx"
    assert load_card(previous).sha256 == sha256_file(parent)
    assert patrol("promote", candidate, "--to", target) == 2  # promoted once: its parent is no longer the default
    assert "the default changed since" in capsys.readouterr().err

    shutil.copyfile(previous, target)  # a rollback is one copy back (with its card)
    shutil.copyfile(models / "patrol-street.previous.card.yaml", models / "patrol-street.card.yaml")
    assert load_card(target).sha256 == sha256_file(parent)
    assert patrol("promote", candidate, "--to", target, "--int8", "--calibration", SAMPLE_VIDEO,
                  "--calibration-frames", "1") == 0
    assert load_card(int8).metrics["derived_from"]["sha256"] == sha256_file(candidate)
    assert load_card(models / "patrol-street-int8.previous.onnx").metrics["derived_from"]["sha256"] == \
        sha256_file(parent)
    lines = [json.loads(line) for line in (models / "LINEAGE.jsonl").read_text().splitlines()]
    assert [(line["file"], line["previous"]) for line in lines] == [
        ("patrol-street.onnx", "patrol-street.previous.onnx"), ("patrol-street.onnx", "patrol-street.previous.onnx"),
        ("patrol-street-int8.onnx", "patrol-street-int8.previous.onnx")]
    assert lines[0]["parent_sha256"] == sha256_file(parent) and lines[0]["reviewed"]["positives"] == 4


def test_a_candidate_that_loses_a_real_set_is_refused_with_exit_3_and_the_table(refused):
    root, candidate, code, stderr = refused
    assert code == 3
    assert "patrol retrain: refused: parents-own lost beyond noise" in stderr
    record = json.loads((root / "refused.gate.json").read_text())
    assert not record["accepted"] and record["refused_by"] == ["parents-own"]
    assert "**lost beyond noise**" in (root / "refused.gate.md").read_text()
    assert "lineage" not in load_card(candidate).metrics  # only an accepted candidate gets one


def test_promote_refuses_a_model_no_gate_accepted(toy, refused, tmp_path, capsys):
    root, parent, _ = toy
    assert patrol("promote", parent, "--to", tmp_path / "patrol-street.onnx") == 2
    assert "no gate record (parent.gate.json) beside it" in capsys.readouterr().err
    shutil.copyfile(parent, tmp_path / "patrol-street.onnx")  # the very parent it was judged against
    assert patrol("promote", refused[1], "--to", tmp_path / "patrol-street.onnx") == 2
    assert "the gate refused it (refused: parents-own lost beyond noise" in capsys.readouterr().err
    assert sha256_file(tmp_path / "patrol-street.onnx") == sha256_file(parent)


def test_retrain_refuses_an_export_with_no_images_and_an_int8_parent_without_its_fp32(toy, tmp_path, capsys):
    root, parent, _ = toy
    (tmp_path / "empty" / "images").mkdir(parents=True)
    assert patrol("retrain", "--reviewed", tmp_path / "empty", "--parent", parent, "--spec", root / "toy.yaml") == 2
    assert f"--reviewed {tmp_path / 'empty'}: no images in" in capsys.readouterr().err
    int8 = tmp_path / "alone-int8.onnx"
    assert patrol("export", parent, "--out", int8, "--int8", "--calibration", SAMPLE_VIDEO,
                  "--calibration-frames", "1") == 0
    assert patrol("retrain", "--reviewed", root / "export", "--parent", int8, "--spec", root / "toy.yaml") == 2
    assert f"--parent {int8}: is the int8 copy of parent" in capsys.readouterr().err
