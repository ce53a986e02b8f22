"""``DetectorSet``: several detectors run as one, each contributing only the roles it is chosen for.

A general COCO model (YOLOX-nano) finds vehicles and people; only the project's own model knows
stalls, bins and garbage. A deployment can run both on every batch and take vehicles from the
first and the rest from the second. Each role comes from exactly one model, so a parked car is
never boxed twice (once per model) and filed twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.detect.detector import Detector
from pipeline.types import Detections, Role


class DetectorSetError(ValueError):
    """Models that cannot form a set: a role a model's card does not map, or one role from two models."""


@dataclass(frozen=True)
class Member:
    """A detector of a set and the roles taken from it; the other roles it finds are dropped."""

    detector: Detector
    roles: frozenset[Role]

    def record(self) -> dict[str, object]:
        return {**self.detector.model_record(), "roles": _in_role_order(self.roles)}

    def taken_classes(self) -> np.ndarray:
        """By the detector's class id: whether that class's boxes are taken from it."""
        card = self.detector.card
        return np.array([card.role_of(name) in self.roles for name in card.classes])


class DetectorSet:
    """Runs every member on each whole batch (each member batches it as a lone ``Detector`` does)
    and gives one ``Detections`` per image with the members' boxes side by side.

    ``class_id`` indexes ``classes``, the members' class lists one after the other, so a class id
    still names one class of one model; the tracker and rules read ``role``.
    """

    def __init__(self, members: Sequence[Member]) -> None:
        if not members:
            raise DetectorSetError("a detector set needs at least one model")
        source_of: dict[str, Member] = {}
        for member in members:
            _check_card_maps(member)
            for role in _in_role_order(member.roles):
                if role in source_of:
                    raise DetectorSetError(
                        f"role {role} is given to two models, {source_of[role].detector.model_path} and "
                        f"{member.detector.model_path}: give each role to one model"
                    )
                source_of[role] = member
        self.members = tuple(members)
        self.classes = tuple(name for member in self.members for name in member.detector.card.classes)
        sizes = [len(member.detector.card.classes) for member in self.members]
        self._class_offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int32)
        self._taken = [member.taken_classes() for member in self.members]
        # frames side by side in a replay: as many as the busiest member can take at once
        self.parallel_runs = max(member.detector.parallel_runs for member in self.members)

    @property
    def name(self) -> str:
        return "+".join(member.detector.name for member in self.members)

    @property
    def providers(self) -> list[str]:
        """Every member's execution providers, in priority order, each once."""
        return list(dict.fromkeys(p for member in self.members for p in member.detector.providers))

    def model_record(self) -> dict[str, object]:
        """``name``, ``sha256`` and ``providers`` as one model's record has them, for readers that
        know no more (``sha256`` here covers the members' sha256s and roles: it names the exact
        combination), and ``members``: each model's own name, sha256, providers and roles."""
        members = [member.record() for member in self.members]
        combination = "\n".join(f"{m['sha256']} {','.join(m['roles'])}" for m in members)
        return {"name": self.name, "sha256": hashlib.sha256(combination.encode()).hexdigest(),
                "providers": self.providers, "members": members}

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        found = [member.detector.detect(images) for member in self.members]
        return [self._merge([per_member[index] for per_member in found]) for index in range(len(images))]

    def _merge(self, per_member: list[Detections]) -> Detections:
        kept = [found[taken[found.class_id]] for found, taken in zip(per_member, self._taken, strict=True)]
        return Detections(
            xyxy=np.concatenate([d.xyxy for d in kept]),
            score=np.concatenate([d.score for d in kept]),
            class_id=np.concatenate([d.class_id + offset for d, offset in zip(kept, self._class_offsets, strict=True)]),
            role=np.concatenate([d.role for d in kept]),
        )


def _in_role_order(roles: frozenset[Role]) -> list[str]:
    return [role.value for role in Role if role in roles]


def _check_card_maps(member: Member) -> None:
    detector = member.detector
    if not member.roles:
        raise DetectorSetError(f"{detector.model_path}: no roles to take from it")
    mapped = detector.card.mapped_roles
    unmapped = _in_role_order(member.roles - mapped)
    if unmapped:
        raise DetectorSetError(
            f"{detector.model_path}: its card {detector.card.name!r} maps no class to {', '.join(unmapped)} "
            f"(it maps: {', '.join(_in_role_order(mapped)) or 'none'})"
        )
