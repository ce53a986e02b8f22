"""Mix the synthetic set and real sources into one YOLO dataset (links, not copies)."""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.synth.actors import CLASSES
from pipeline.train.sources import Source


def _link(image: Path, label_lines: list[str], out: Path, prefix: str) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    target = out / "images" / f"{prefix}__{image.name}"
    if not target.exists():
        target.symlink_to(image.resolve())
    (out / "labels" / f"{prefix}__{image.stem}.txt").write_text("\n".join(label_lines) + ("\n" if label_lines else ""))


def build_mix(out: Path, synth_dir: Path, sources: list[Source], *, per_source_train: int, seed: int = 0) -> dict:
    """Writes ``out/data.yaml`` (train = synthetic + a sample of each real source, val = synthetic val)
    and ``out/holdout-<source>.yaml`` per real source (its held-out split, for per-source mAP)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    names = "names:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES))
    counts = {"synthetic": len(list((synth_dir / "train" / "images").glob("*.jpg")))}
    train_dirs = [str((synth_dir / "train" / "images").resolve())]
    for source in sources:
        images = source.images(source.train_split)
        picked = rng.sample(images, min(per_source_train, len(images)))
        for image in picked:
            _link(image, source.label_lines(image), out / "train" / source.name, source.name)
        train_dirs.append(str((out / "train" / source.name / "images").resolve()))
        counts[source.name] = len(picked)
        for image in source.images(source.holdout_split):
            _link(image, source.label_lines(image), out / "holdout" / source.name, source.name)
        (out / f"holdout-{source.name}.yaml").write_text(
            f"path: {out.resolve()}\ntrain: holdout/{source.name}/images\nval: holdout/{source.name}/images\n{names}")
    (out / "holdout-synthetic.yaml").write_text(
        f"path: {synth_dir.resolve()}\ntrain: val/images\nval: val/images\n{names}")
    train_list = "".join(f"  - {d}\n" for d in train_dirs)
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain:\n{train_list}val: {(synth_dir / 'val' / 'images').resolve()}\n{names}")
    return counts
