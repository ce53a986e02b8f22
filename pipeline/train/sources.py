"""Labelled image sources and how their classes map into the project's class map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.synth.actors import CLASSES

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    class_map: dict[int, str]  # source class id -> project class name; unlisted ids are dropped
    train_split: str
    holdout_split: str
    attribution: str

    def images(self, split: str) -> list[Path]:
        return sorted((self.root / split / "images").glob("*.jpg"))

    def label_lines(self, image: Path) -> list[str]:
        """YOLO box lines in project class ids; polygons become their bounding boxes."""
        label = image.parent.parent / "labels" / (image.stem + ".txt")
        lines = []
        for raw in label.read_text().splitlines() if label.exists() else []:
            parts = raw.split()
            if len(parts) < 5 or int(parts[0]) not in self.class_map:
                continue
            values = [float(v) for v in parts[1:]]
            if len(values) == 4:
                cx, cy, w, h = values
            else:
                xs, ys = values[0::2], values[1::2]
                cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
            if w > 0 and h > 0:
                lines.append(f"{CLASSES.index(self.class_map[int(parts[0])])} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        return lines


def shared_sources(shared: Path = SHARED) -> dict[str, Source]:
    """The real labelled sets in ../shared/datasets (see its README for licences)."""
    d = shared / "datasets"
    return {
        "parking-lot-cam": Source(
            "parking-lot-cam", d / "parking-lot-cam", {1: "vehicle"}, "train", "valid",
            "parking-space-uffuo v22 (Roboflow Universe, my-project-ppguz), CC BY 4.0; "
            "'occupied' space polygons used as vehicle boxes"),
        "street-vendors-aerial": Source(
            "street-vendors-aerial", d / "street-vendors-aerial", {0: "stall"}, "train", "valid",
            "vendedores_ambulantes_pesquisa v8 (Roboflow Universe, piscinas-2is0y), CC BY 4.0"),
        "trash-bags": Source(
            "trash-bags", d / "trash-bags", {0: "garbage_pile", 1: "garbage_pile"}, "train", "valid",
            "trashbags-segmentation (Roboflow Universe, woosongvision), CC BY 4.0; bag polygons as garbage_pile boxes"),
    }
