"""The whole model workflow at toy size: render a few synthetic scenes, `patrol train` one epoch at
64 px with ultralytics, export ONNX with its card, load it in the patrol's Detector, make FP16 and
INT8 copies, and `patrol eval` it. ultralytics is in the `test` extra: this never skips."""

from __future__ import annotations

import json
import sys

import av
import cv2
import pytest
from support import REPO, SAMPLE_VIDEO, heavy_fixture

from pipeline.cli.main import main as cli_main
from pipeline.detect import Detector, load_card
from pipeline.synth import render_dataset
from pipeline.synth.actors import CLASSES


def patrol(*argv: str) -> int:
    return cli_main(list(argv))


SPEC = """\
name: smoke
val: synthetic
sources:
  synthetic: {path: synth, train: train, holdout: val, licence: Apache-2.0, attribution: smoke-test scenes}
"""


@heavy_fixture(scope="module")
def trained(tmp_path_factory):
    import ultralytics  # noqa: F401 — the test extra installs it; a missing one is an error, not a skip

    root = tmp_path_factory.mktemp("smoke")
    render_dataset(root / "synth", 10, seed=3, val_fraction=0.2, sizes=((128, 96),), progress=False)
    (root / "street.yaml").write_text(SPEC)
    model = root / "smoke.onnx"
    assert patrol("train", str(root / "street.yaml"), "--out", str(model), "--work", str(root / "work"),
                  "--epochs", "1", "--imgsz", "64", "--batch", "4") == 0
    return root, model


def test_training_exports_an_onnx_model_with_its_card(trained):
    root, model = trained
    card = load_card(model)
    assert card.classes == list(CLASSES)
    assert (card.input.width, card.input.height) == (64, 64)
    assert card.layout == "ultralytics" and card.metrics["precision"] == "fp32"
    assert "synthetic 8" in card.data and "Apache-2.0" in card.data
    training = json.loads((root / "work" / "training.json").read_text())
    assert training["epochs"] == 1 and training["train_images"] == {"synthetic": 8}


def test_the_trained_model_runs_in_the_patrols_detector(trained):
    root, model = trained
    detector = Detector(model, conf_threshold=0.0)
    image = cv2.imread(str(next((root / "synth" / "val" / "images").glob("*.jpg"))))
    (detections,) = detector.detect([image])
    assert len(detections) > 0
    assert set(detections.role) <= set(CLASSES)


@pytest.mark.parametrize("flag, precision", [("--half", "fp16"), ("--int8", "int8")])
def test_export_makes_reduced_precision_copies_with_their_cards(trained, flag, precision):
    root, model = trained
    out = root / f"smoke-{precision}.onnx"
    assert patrol("export", str(model), "--out", str(out), flag, "--calibration", str(SAMPLE_VIDEO),
                  "--calibration-frames", "2") == 0
    card = load_card(out)
    assert card.metrics["precision"] == precision
    assert card.metrics["derived_from"]["sha256"] == load_card(model).sha256
    assert card.name == f"{load_card(model).name}-{precision}"
    image = cv2.imread(str(next((root / "synth" / "val" / "images").glob("*.jpg"))))
    Detector(out).detect([image])


def test_eval_writes_json_and_png_and_the_card_quotes_them(trained):
    root, model = trained
    out = root / "eval"
    assert patrol("eval", str(model), "--spec", str(root / "street.yaml"), "--eval-out", str(out),
                  "--eval-work", str(root / "eval-work"), "--events", "--card") == 0
    report = json.loads((out / "eval-smoke.json").read_text())
    assert report["holdout"]["synthetic"]["images"] == 2
    assert cv2.imread(str(out / "eval-smoke.png")) is not None
    card = load_card(model)
    assert card.metrics["holdout"]["synthetic"]["mAP50"] == report["holdout"]["synthetic"]["mAP50"]


def test_train_without_ultralytics_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "street.yaml").write_text(SPEC)
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes `import ultralytics` raise ImportError
    assert patrol("train", str(tmp_path / "street.yaml"), "--out", str(tmp_path / "m.onnx")) == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().err


def test_a_shipped_onnx_model_rebuilds_into_a_checkpoint_that_computes_the_same(tmp_path):
    import numpy as np
    import onnxruntime
    import torch

    from pipeline.train.from_onnx import checkpoint_from_onnx

    shipped = REPO / "models" / "patrol-street.onnx"
    checkpoint = torch.load(checkpoint_from_onnx(shipped, tmp_path / "init.pt"), weights_only=False)
    with av.open(str(SAMPLE_VIDEO)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    tensor = (cv2.resize(frame, (512, 288)).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    session = onnxruntime.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: tensor})[0]
    with torch.no_grad():
        rebuilt = checkpoint["model"].eval()(torch.from_numpy(tensor))[0].numpy()
    assert checkpoint["model"].names == dict(enumerate(load_card(shipped).classes))
    assert np.abs(rebuilt - expected).max() < 1e-3 * np.abs(expected).max()


def test_training_can_start_from_an_exported_onnx_model(trained):
    root, model = trained
    tuned = root / "tuned.onnx"
    assert patrol("train", str(root / "street.yaml"), "--init", str(model), "--out", str(tuned), "--work",
                  str(root / "work-tuned"), "--epochs", "1", "--imgsz", "64", "--batch", "4") == 0
    card = load_card(tuned)
    assert f"fine-tuned from {model.name}, sha256 {load_card(model).sha256[:12]}" in card.source
    assert card.sha256 != load_card(model).sha256


def test_an_onnx_model_of_another_architecture_is_refused_naming_the_weight(trained, capsys):
    root, model = trained
    assert patrol("train", str(root / "street.yaml"), "--init", str(model), "--base", "yolov8s.yaml", "--out",
                  str(root / "never.onnx"), "--work", str(root / "work-never"), "--epochs", "1", "--imgsz", "64") == 2
    err = capsys.readouterr().err
    assert f"--init {model}" in err and "model.0.conv.weight" in err and "yolov8s.yaml" in err


def test_an_onnx_model_not_exported_by_ultralytics_is_refused(trained, shared, capsys):
    root, _ = trained
    yolox = shared / "models" / "yolox_nano.onnx"
    assert patrol("train", str(root / "street.yaml"), "--init", str(yolox), "--out", str(root / "never.onnx"),
                  "--work", str(root / "work-yolox"), "--epochs", "1", "--imgsz", "64") == 2
    assert f"--init {yolox}: not an ultralytics export" in capsys.readouterr().err


def test_a_model_fine_tuned_from_the_agpl_coco_checkpoint_says_agpl_in_its_card(trained, shared):
    """Its licence passes to the weights trained from it; the card names the parent by sha256."""
    from pipeline.detect.card import sha256_file

    root, _ = trained
    coco = shared / "models" / "yolov8n_coco.pt"
    tuned = root / "from-coco.onnx"
    assert patrol("train", str(root / "street.yaml"), "--init", str(coco), "--freeze", "10", "--out", str(tuned),
                  "--work", str(root / "work-coco"), "--epochs", "1", "--imgsz", "64", "--batch", "4") == 0
    card = load_card(tuned)
    assert card.licence.startswith("AGPL-3.0") and sha256_file(coco)[:12] in card.licence
    assert "Apache-2.0" in card.licence  # the code's licence, said apart from the weights'
    assert "COCO-pretrained" in card.notes and "random init" not in card.notes
    training = json.loads((root / "work-coco" / "training.json").read_text())
    assert training["parent"]["name"] == "yolov8n_coco" and training["freeze"] == 10
    assert load_card(root / "smoke.onnx").licence.startswith("Apache-2.0")  # from scratch: the project's own


def test_keeping_the_coco_classes_keeps_the_whole_head_and_maps_roles_in_the_card(trained, shared):
    """Fine-tuned with --keep-classes, the model still has COCO's 80 outputs (car, bus, person ...)
    and its card maps them and the four project classes that took the place of unread ones."""
    import torch

    root, _ = trained
    coco = shared / "models" / "yolov8n_coco.pt"
    tuned = root / "kept.onnx"
    assert patrol("train", str(root / "street.yaml"), "--init", str(coco), "--keep-classes", "--out", str(tuned),
                  "--work", str(root / "work-kept"), "--epochs", "1", "--imgsz", "64", "--batch", "4") == 0
    card = load_card(tuned)
    parent = torch.load(coco, weights_only=False)["model"]
    assert len(card.classes) == 80 and card.classes[:8] == [parent.names[i] for i in range(8)]
    assert {card.role_of(c).value for c in ("car", "bus", "truck")} == {"vehicle"}
    assert [card.role_of(c).value for c in ("stall", "bin", "overflowing_bin", "garbage_pile")] == \
        ["stall", "bin", "overflowing_bin", "garbage_pile"]
    labels = (root / "work-kept" / "mix" / "train" / "synthetic" / "labels").glob("*.txt")
    used = {int(line.split()[0]) for label in labels for line in label.read_text().splitlines()}
    assert used <= {card.classes.index(c) for c in ("car", "bicycle", "person", "stall", "bin", "overflowing_bin",
                                                    "garbage_pile")}
    image = cv2.imread(str(next((root / "synth" / "val" / "images").glob("*.jpg"))))
    assert Detector(tuned, conf_threshold=0.0).detect([image])[0].role.size > 0


def test_keep_classes_without_a_parent_card_is_refused(trained, capsys):
    root, model = trained
    assert patrol("train", str(root / "street.yaml"), "--keep-classes", "--out", str(root / "never.onnx"),
                  "--work", str(root / "work-never-kept"), "--epochs", "1", "--imgsz", "64") == 2
    assert "--keep-classes: needs an --init with a card" in capsys.readouterr().err
