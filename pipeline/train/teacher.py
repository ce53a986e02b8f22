"""Pseudo-labels from a pretrained teacher for the classes a source's own labels leave out.

The real sets label one thing each (stalls from a drone, garbage bags, parking spaces), yet their
pictures hold cars, e-bikes and people too. Trained on them as they are, a model learns that those
unlabelled cars are background, which unlearns exactly what a COCO-pretrained start knows. So a
source may name the classes a teacher (a COCO detector with a card, run through the deployed
``Detector``) labels for it; its boxes join the source's own labels in the training mix only,
never in a held-out split, so no measured figure rests on a teacher's boxes.

Labels are cached per image under the work folder, keyed by the image's name and the teacher's
sha256, so a second training run does not run the teacher again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2

from pipeline.detect import Detector
from pipeline.synth.actors import CLASSES


class Teacher:
    """Runs ``model`` over training images and writes YOLO lines for the project classes asked of it."""

    def __init__(self, model: Path, *, conf: float, cache: Path) -> None:
        self._detector = Detector(model, conf_threshold=conf)
        self._cache = cache / self._detector.card.sha256[:16] / f"conf{conf:g}"
        self.model = model
        self.conf = conf

    @property
    def roles(self) -> frozenset[str]:
        """The project classes it can label: the roles its card maps."""
        return frozenset(role.value for role in self._detector.card.mapped_roles())

    def label_lines(self, image: Path, classes: frozenset[str]) -> list[str]:
        """YOLO lines (project class ids, normalised centre and size) of its boxes of ``classes``."""
        return [line for line in self._all_lines(image) if CLASSES[int(line.split()[0])] in classes]

    def _all_lines(self, image: Path) -> list[str]:
        digest = hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:16]
        cached = self._cache / f"{image.stem}-{digest}.txt"
        if cached.is_file():
            return cached.read_text().splitlines()
        picture = cv2.imread(str(image))
        if picture is None:
            raise ValueError(f"{image}: not an image the teacher can read")
        height, width = picture.shape[:2]
        found = self._detector.detect([picture])[0]
        lines = []
        for (x1, y1, x2, y2), role in zip(found.xyxy.tolist(), found.role.tolist(), strict=True):
            if role not in CLASSES or x2 <= x1 or y2 <= y1:
                continue
            lines.append(f"{CLASSES.index(role)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                         f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text("".join(f"{line}\n" for line in lines))
        return lines
