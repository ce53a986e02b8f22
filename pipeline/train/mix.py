"""Mix a spec's sources into one YOLO dataset for ultralytics (links to the images, converted labels)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from pipeline.synth.actors import CLASSES
from pipeline.train.layout import PROJECT_LAYOUT, ClassLayout
from pipeline.train.sources import Source
from pipeline.train.spec import LoadedSpec

if TYPE_CHECKING:
    from pipeline.train.teacher import Teacher



def draw(images: list[Path], wanted: int, rng: random.Random) -> list[Path]:
    """``wanted`` images: each image once per full pass, then a random sample for the rest."""
    passes, rest = divmod(wanted, len(images)) if images else (0, 0)
    return images * passes + rng.sample(images, rest)


def wanted_count(loaded: LoadedSpec, source: Source) -> int:
    spec = loaded.spec.sources[source.name]
    available = len(source.train_images())
    if spec.count is not None:
        return spec.count
    return round(available * (spec.weight if spec.weight is not None else 1.0))


def build_mix(loaded: LoadedSpec, sources: dict[str, Source], out: Path, teacher: Teacher | None = None,
              layout: ClassLayout = PROJECT_LAYOUT) -> dict[str, int]:
    """Writes ``out/data.yaml`` (train: every source's draw; val: the spec's ``val`` source's held-out
    split) and ``out/holdout-<source>.yaml`` per source with a held-out split. Returns the number of
    training images drawn from each source. A source's ``teach`` classes are labelled by ``teacher``
    in its training images; held-out labels are always the source's own. Labels are written in
    ``layout``'s class ids (held-out ones too: ultralytics validates on them)."""
    names_yaml = layout.names_yaml()
    if loaded.spec.val not in sources:
        raise loaded.error("val", f"source {loaded.spec.val!r} is not there to validate on")
    rng = random.Random(loaded.spec.seed)
    for stale in ("train", "holdout"):  # links and labels of an earlier draw
        shutil.rmtree(out / stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, source in sources.items():
        picked = draw(source.train_images(), wanted_count(loaded, source), rng)
        seen: dict[str, int] = {}
        if source.teach and teacher is None:
            raise loaded.error(f"sources.{name}.teach", "there is no teacher to label it")
        for image in tqdm(picked, desc=f"mix {name}", unit="img", leave=False):
            repeat = seen[image.name] = seen.get(image.name, 0) + 1
            lines = _in_layout(source.label_lines(image), layout)
            if source.teach:
                lines += [f"{layout.id_for(t.class_name, t.project_class)} {' '.join(f'{v:.6f}' for v in t.box)}"
                          for t in teacher.boxes(image, source.teach)]
            _link(image, lines, out / "train" / name, f"{name}__r{repeat}" if repeat > 1 else name)
        counts[name] = len(picked)
        holdout = source.holdout_images()
        for image in holdout:
            _link(image, _in_layout(source.label_lines(image), layout), out / "holdout" / name, name)
        if holdout:
            (out / f"holdout-{name}.yaml").write_text(
                f"path: {out.resolve()}\ntrain: holdout/{name}/images\nval: holdout/{name}/images\n{names_yaml}")
    train_list = "".join(f"  - train/{name}/images\n" for name, n in counts.items() if n)
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain:\n{train_list}val: holdout/{loaded.spec.val}/images\n{names_yaml}")
    return counts


def _in_layout(project_lines: list[str], layout: ClassLayout) -> list[str]:
    """YOLO lines in project class ids, renumbered into ``layout``'s."""
    return [f"{layout.id_of(CLASSES[int(line.split(maxsplit=1)[0])])} {line.split(maxsplit=1)[1]}"
            for line in project_lines]


def _link(image: Path, label_lines: list[str], out: Path, prefix: str) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    target = out / "images" / f"{prefix}__{image.name}"
    if not target.is_symlink():
        target.symlink_to(image.resolve())
    (out / "labels" / f"{prefix}__{image.stem}.txt").write_text("\n".join(label_lines) + ("\n" if label_lines else ""))
