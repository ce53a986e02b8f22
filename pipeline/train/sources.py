"""Labelled image sources of a dataset spec, their splits, and their labels in the project's class map."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.synth.actors import CLASSES
from pipeline.synth.paste import PLACES, CutoutPool
from pipeline.train.spec import LoadedSpec, SourceSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    class_map: dict[int, str]  # source class id -> project class name; unlisted ids are dropped
    train_split: str
    holdout_split: str | None
    holdout_fraction: float | None
    licence: str
    attribution: str
    teach: frozenset[str] = frozenset()  # project classes a teacher labels in its training images

    def images(self, split: str) -> list[Path]:
        folder = self.root / split / "images"
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []

    def train_images(self) -> list[Path]:
        return [p for p in self.images(self.train_split) if not self._held_out_by_hash(p)]

    def holdout_images(self) -> list[Path]:
        if self.holdout_fraction is not None:
            return [p for p in self.images(self.train_split) if self._held_out_by_hash(p)]
        return self.images(self.holdout_split) if self.holdout_split is not None else []

    @property
    def classes(self) -> list[str]:
        """The project classes this source is labelled with: the only ones it can measure."""
        return sorted(set(self.class_map.values()), key=CLASSES.index)

    def shapes(self, image: Path) -> list[tuple[str, list[tuple[float, float]]]]:
        """(project class, outline) of each labelled object, the outline in 0-1 image coordinates:
        the polygon as labelled, or a box's four corners."""
        label = image.parent.parent / "labels" / (image.stem + ".txt")
        shapes = []
        for raw in label.read_text().splitlines() if label.exists() else []:
            parts = raw.split()
            if len(parts) < 5 or int(parts[0]) not in self.class_map:
                continue
            values = [float(v) for v in parts[1:]]
            if len(values) == 4:
                cx, cy, w, h = values
                outline = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2),
                           (cx - w / 2, cy + h / 2)]
            else:
                outline = list(zip(values[0::2], values[1::2], strict=False))
            shapes.append((self.class_map[int(parts[0])], outline))
        return shapes

    def label_lines(self, image: Path) -> list[str]:
        """YOLO box lines in project class ids; polygons become their bounding boxes."""
        lines = []
        for cls, outline in self.shapes(image):
            xs, ys = [x for x, _ in outline], [y for _, y in outline]
            w, h = max(xs) - min(xs), max(ys) - min(ys)
            if w > 0 and h > 0:
                cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
                lines.append(f"{CLASSES.index(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        return lines

    def _held_out_by_hash(self, image: Path) -> bool:
        if self.holdout_fraction is None:
            return False
        bucket = int.from_bytes(hashlib.sha256(image.name.encode()).digest()[:4], "big") / 2**32
        return bucket < self.holdout_fraction


def source_names(root: Path) -> list[str]:
    """The class names in a source's data.yaml (a list, or a mapping of id to name)."""
    data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8")) or {}
    names = data.get("names", [])
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def open_sources(loaded: LoadedSpec, *, holdout_only_in: Path | None = None) -> dict[str, Source]:
    """The spec's sources that are there (an ``optional`` one that is missing is left out), checked
    against their folders. A missing source with a ``render`` recipe is rendered first: whole, or
    with ``holdout_only_in`` (for evaluation) only its held-out scenes, into that folder. Sources
    that paste real cut-outs are rendered last, from the real sources opened before them; for
    evaluation they are left out (they have nothing held out)."""
    need_train = holdout_only_in is None
    specs = loaded.spec.sources
    pasting = {name for name, spec in specs.items() if spec.render is not None and spec.render.paste_from}
    sources: dict[str, Source] = {}
    for name in [n for n in specs if n not in pasting] + ([n for n in specs if n in pasting] if need_train else []):
        spec = specs[name]
        root = loaded.folder(name)
        field = f"sources.{name}"
        if not root.is_dir() and spec.render is not None:
            if not need_train:
                root = _render_holdout(holdout_only_in / name, spec)
            else:
                root = _render(root, spec, _pools(loaded, name, sources))
        if not root.is_dir():
            if spec.optional:
                continue
            raise loaded.error(f"{field}.path", f"no such folder {root}")
        source = Source(name, root, _class_map(loaded, name, spec, root), spec.train, spec.holdout,
                        spec.holdout_fraction, spec.licence, spec.attribution, frozenset(spec.teach))
        if need_train and not source.images(spec.train):
            raise loaded.error(f"{field}.train", f"no images in {root / spec.train / 'images'}")
        if spec.holdout is not None and spec.holdout_fraction is None and not source.images(spec.holdout):
            raise loaded.error(f"{field}.holdout", f"no images in {root / spec.holdout / 'images'}")
        sources[name] = source
    return {name: sources[name] for name in specs if name in sources}  # in the spec's order


def _pools(loaded: LoadedSpec, name: str, opened: dict[str, Source]) -> list[CutoutPool]:
    """The cut-out pools a pasting source's render draws from."""
    from pipeline.train.cutouts import MIN_SIDE_PX, cutouts_of  # cutouts are cut from a Source

    pools = []
    for other, most_per_scene in loaded.spec.sources[name].render.paste_from.items():
        field = f"sources.{name}.render.paste_from.{other}"
        if other not in opened:
            raise loaded.error(field, f"source {other!r} is not there to cut objects from")
        cutouts = cutouts_of(opened[other], seed=loaded.spec.seed)
        if not cutouts:
            raise loaded.error(field, f"{other!r} has no objects of a pastable class ({', '.join(PLACES)}) "
                                      f"at least {MIN_SIDE_PX} px in its training images")
        pools.append(CutoutPool(cutouts, most_per_scene))
    return pools


def _class_map(loaded: LoadedSpec, name: str, spec: SourceSpec, root: Path) -> dict[int, str]:
    field = f"sources.{name}.classes"
    try:
        names = source_names(root)
    except (OSError, yaml.YAMLError) as exc:
        if spec.classes is None:  # project-labelled sources (synthetic, reviewed) use the project's ids
            return dict(enumerate(CLASSES))
        raise loaded.error(field, f"cannot read the class names in {root / 'data.yaml'}: {exc}") from None
    if spec.classes is None:
        if names and names != list(CLASSES):
            raise loaded.error(field, f"{root / 'data.yaml'} has classes {names}, not the project's; map them here")
        return dict(enumerate(CLASSES))
    unknown = sorted(set(spec.classes) - set(names))
    if unknown:
        raise loaded.error(field, f"{unknown} are not classes of {root / 'data.yaml'} ({', '.join(names)})")
    return {names.index(source_class): project for source_class, project in spec.classes.items()}


def _render(root: Path, spec: SourceSpec, pools: list[CutoutPool]) -> Path:
    from pipeline.synth import render_dataset

    recipe = spec.render
    render_dataset(root, recipe.count, seed=recipe.seed, val_fraction=recipe.val_fraction, weather=recipe.weather,
                   pools=pools)
    return root


def _render_holdout(root: Path, spec: SourceSpec) -> Path:
    """Exactly the val scenes of the full render: render_dataset puts its first round(count *
    val_fraction) scenes in val, and each scene's draws do not depend on its split."""
    from pipeline.synth import render_dataset

    recipe = spec.render
    if not (root / "val" / "images").is_dir():
        render_dataset(root, round(recipe.count * recipe.val_fraction), seed=recipe.seed, val_fraction=1.0,
                       weather=recipe.weather)
    return root
