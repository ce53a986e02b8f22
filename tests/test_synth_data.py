"""The training-data changes of the synthetic streets: rain and glare, and real cut-outs pasted in
(only from a source's training images, never its held-out ones)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.synth import render_dataset
from pipeline.synth.actors import CLASSES
from pipeline.synth.paste import Cutout, paste
from pipeline.synth.scenario import random_scene
from pipeline.synth.weather import glare, rain
from pipeline.train.sources import open_sources
from pipeline.train.spec import SpecError, load_spec

TRAIN_BGR, HELD_OUT_BGR = (255, 0, 0), (0, 0, 255)  # pure blue objects to train on, pure red held out


def scene_and_render(seed: int = 5):
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, 640, 360)
    img, labels = scene.render(0.0, rng)
    return scene, img, labels, rng


def test_rain_and_glare_change_the_picture_and_keep_its_size() -> None:
    _, img, _, rng = scene_and_render()
    for effect in (rain, glare):
        out = effect(img, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 3, effect.__name__
    lit = glare(img, np.random.default_rng(1))
    assert lit.mean() > img.mean()  # glare lifts the light; rain dims it
    assert rain(img, np.random.default_rng(1)).mean() < img.mean() + 10


def test_a_pasted_cutout_is_labelled_where_it_stands_and_what_it_hides_loses_its_label() -> None:
    scene, img, labels, rng = scene_and_render()
    bag = Cutout("garbage_pile", np.full((60, 80, 3), TRAIN_BGR, np.uint8), np.full((60, 80), 255, np.uint8))
    out, relabelled = paste(img, labels, scene, [bag] * 3, rng)
    pasted = [box for cls, box in relabelled if cls == "garbage_pile" and box not in [b for _, b in labels]]
    assert pasted, "a pasted bag gets a box"
    for x1, y1, x2, y2 in pasted:
        assert 0 <= x1 < x2 < 640 and 0 <= y1 < y2 < 360
        inside = out[int(y1) + 2: int(y2) - 1, int(x1) + 2: int(x2) - 1].reshape(-1, 3).astype(int)
        assert np.abs(inside - np.array(TRAIN_BGR) * scene.lighting[0]).max(axis=1).mean() < 80  # its pixels, lit
    # big vehicles over the street: a drawn object mostly under them loses its label, the rest keep theirs
    trucks = Cutout("vehicle", np.full((90, 150, 3), TRAIN_BGR, np.uint8), np.full((90, 150), 255, np.uint8))
    out, relabelled = paste(img, labels, scene, [trucks] * 12, np.random.default_rng(2))
    covered = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 40
    dropped = 0
    for cls, (x1, y1, x2, y2) in labels:
        share = covered[round(y1): round(y2) + 1, round(x1): round(x2) + 1].mean()
        kept = (cls, (x1, y1, x2, y2)) in relabelled
        dropped += not kept
        if share > 0.7:
            assert not kept, (cls, share)
        elif share < 0.5:
            assert kept, (cls, share)
    assert dropped > 0


def real_set(root: Path, split: str, colour: tuple[int, int, int], count: int) -> None:
    """A tiny real-looking set: grey photos with one coloured bag each, labelled as a polygon."""
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for index in range(count):
        img = np.full((120, 160, 3), 128, np.uint8)
        outline = np.array([[40, 30], [120, 30], [130, 90], [30, 90]], np.int32)
        cv2.fillPoly(img, [outline], colour)
        cv2.imwrite(str(root / split / "images" / f"{split}{index}.png"), img)
        polygon = " ".join(f"{x / 160:.4f} {y / 120:.4f}" for x, y in outline)
        (root / split / "labels" / f"{split}{index}.txt").write_text(f"0 {polygon}\n")
    (root / "data.yaml").write_text("names: ['trashbag']\n")


SPEC = """name: x
val: bags
sources:
  bags: {path: bags, classes: {trashbag: garbage_pile}}
  pasted:
    path: pasted
    render: {count: 12, seed: 3, weather: true, paste_from: {bags: 4}}
    holdout: null
"""


def render_pasted(root: Path, held_out_colour: tuple[int, int, int], train_colour=TRAIN_BGR) -> dict:
    real_set(root / "bags", "train", train_colour, 3)
    real_set(root / "bags", "valid", held_out_colour, 3)
    (root / "spec.yaml").write_text(SPEC)
    return open_sources(load_spec(root / "spec.yaml"))


def test_pasted_scenes_take_objects_from_training_images_only(tmp_path: Path) -> None:
    sources = render_pasted(tmp_path / "a", HELD_OUT_BGR)
    assert list(sources) == ["bags", "pasted"]
    images = sources["pasted"].train_images()
    bag = CLASSES.index("garbage_pile")
    assert images and any(line.startswith(f"{bag} ") for image in images
                          for line in sources["pasted"].label_lines(image))
    # other held-out pictures, the same training scenes to the byte: held-out objects never reach them
    other = render_pasted(tmp_path / "b", (0, 255, 0))["pasted"].train_images()
    assert [p.read_bytes() for p in images] == [p.read_bytes() for p in other]
    # and the training objects do: other training pictures, other scenes
    changed = render_pasted(tmp_path / "c", HELD_OUT_BGR, train_colour=(0, 255, 255))["pasted"].train_images()
    assert [p.read_bytes() for p in images] != [p.read_bytes() for p in changed]
    # evaluation leaves a pasting source out: it holds nothing out
    assert "pasted" not in open_sources(load_spec(tmp_path / "a" / "spec.yaml"), holdout_only_in=tmp_path / "eval")


@pytest.mark.parametrize("pasting, reason", [
    ("{path: p, render: {count: 2, paste_from: {nope: 1}}, holdout: null}", "'nope' is not another source"),
    ("{path: p, render: {count: 2, paste_from: {p2: 1}}, holdout: null}", "'p2' is not another source"),
    ("{path: p, render: {count: 2, paste_from: {bags: 1}}}", "cannot be held out"),
    ("{path: p, render: {count: 2, paste_from: {bags: 0}}, holdout: null}", "greater than 0"),
])
def test_a_bad_paste_recipe_is_refused_with_its_field(tmp_path: Path, pasting: str, reason: str) -> None:
    spec = ("name: x\nval: bags\nsources:\n  bags: {path: bags}\n  p2: {path: q, render: {count: 2}, holdout: null}\n"
            f"  pasted: {pasting}\n")
    (tmp_path / "spec.yaml").write_text(spec)
    with pytest.raises(SpecError, match=reason):
        load_spec(tmp_path / "spec.yaml")


def test_a_source_without_objects_to_cut_is_named(tmp_path: Path) -> None:
    real_set(tmp_path / "bags", "train", TRAIN_BGR, 2)
    real_set(tmp_path / "bags", "valid", HELD_OUT_BGR, 1)
    (tmp_path / "bags" / "data.yaml").write_text("names: ['trashbag', 'lamp']\n")
    for label in (tmp_path / "bags" / "train" / "labels").iterdir():  # every object is a lamp now
        label.write_text(label.read_text().replace("0 ", "1 ", 1))
    (tmp_path / "spec.yaml").write_text(SPEC.replace("{trashbag: garbage_pile}", "{trashbag: garbage_pile, lamp: person}"))
    with pytest.raises(SpecError, match=r"sources\.pasted\.render\.paste_from\.bags: 'bags' has no objects"):
        open_sources(load_spec(tmp_path / "spec.yaml"))


def test_the_weather_recipe_renders_the_same_held_out_scenes_for_eval(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", 4, seed=9, val_fraction=0.5, sizes=((96, 64),), weather=True, progress=False)
    render_dataset(tmp_path / "b", 2, seed=9, val_fraction=1.0, sizes=((96, 64),), weather=True, progress=False)
    first = sorted((tmp_path / "a" / "val" / "images").iterdir())
    second = sorted((tmp_path / "b" / "val" / "images").iterdir())
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
