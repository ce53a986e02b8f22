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
import json
from pathlib import Path
from typing import NamedTuple

import cv2

from pipeline.detect import Detector
from pipeline.synth.actors import CLASSES


class TaughtBox(NamedTuple):
    class_name: str  # the teacher's own class (``bus``)
    project_class: str  # the role its card maps it to (``vehicle``)
    box: tuple[float, float, float, float]  # YOLO: centre x, centre y, width, height, 0-1


class Teacher:
    """Runs ``model`` over training images and gives its boxes of the project classes asked of it."""

    def __init__(self, model: Path, *, conf: float, cache: Path) -> None:
        self._detector = Detector(model, conf_threshold=conf)
        self._cache = cache / self._detector.card.sha256[:16] / f"conf{conf:g}"
        self.model = model
        self.conf = conf

    @property
    def roles(self) -> frozenset[str]:
        """The project classes it can label: the roles its card maps."""
        return frozenset(role.value for role in self._detector.card.mapped_roles())

    def boxes(self, image: Path, classes: frozenset[str]) -> list[TaughtBox]:
        """Its boxes on ``image`` of the project classes ``classes``."""
        return [found for found in self._all_boxes(image) if found.project_class in classes]

    def _all_boxes(self, image: Path) -> list[TaughtBox]:
        digest = hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:16]
        cached = self._cache / f"{image.stem}-{digest}.json"
        if cached.is_file():
            return [TaughtBox(name, project_class, tuple(box))
                    for name, project_class, box in json.loads(cached.read_text(encoding="utf-8"))]
        picture = cv2.imread(str(image))
        if picture is None:
            raise ValueError(f"{image}: not an image the teacher can read")
        height, width = picture.shape[:2]
        found = self._detector.detect([picture])[0]
        names = self._detector.card.classes
        taught = []
        for (x1, y1, x2, y2), class_id, role in zip(found.xyxy.tolist(), found.class_id.tolist(), found.role.tolist(),
                                                    strict=True):
            if role not in CLASSES or x2 <= x1 or y2 <= y1:
                continue
            taught.append(TaughtBox(names[class_id], role, (round((x1 + x2) / 2 / width, 6),
                                                             round((y1 + y2) / 2 / height, 6),
                                                             round((x2 - x1) / width, 6), round((y2 - y1) / height, 6))))
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps([list(t) for t in taught]), encoding="utf-8")
        return taught
