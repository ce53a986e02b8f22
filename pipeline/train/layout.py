"""The classes a trained model outputs, and the project class each one stands for.

By default a model outputs the project's seven classes. Fine-tuned from a COCO checkpoint that way,
its classification head has to be learnt again: YOLOv8's head is as wide as its class count
(80 channels for COCO, 64 for seven), so none of it carries over, and what COCO knew about cars,
bicycles and people rests on the few real cars the project's sets label. Keeping the parent's
classes instead keeps every weight of the head: ``car`` goes on being ``car`` from the first step,
and the project classes the parent has no class for take the slots of parent classes no role
reads (COCO's last ones: toothbrush, hair drier, ...). The card maps each class to its role, as a
COCO model's card does, so the patrol reads either kind of model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.detect.card import ModelCard
from pipeline.synth.actors import CLASSES
from pipeline.types import Role


@dataclass(frozen=True)
class ClassLayout:
    names: tuple[str, ...]  # the model's classes, in output order
    roles: dict[str, str]  # class name -> project class; names not listed stand for none

    def id_of(self, project_class: str) -> int:
        """The class a label of ``project_class`` trains: the first class standing for it."""
        return next(i for i, name in enumerate(self.names) if self.roles.get(name) == project_class)

    def id_for(self, class_name: str, project_class: str) -> int:
        """A teacher's box: its own class where the model has it (a COCO teacher's ``bus`` stays a
        bus for a model that kept COCO's classes), else the class standing for its role."""
        return self.names.index(class_name) if class_name in self.roles else self.id_of(project_class)

    def names_yaml(self) -> str:
        return "names:\n" + "".join(f"  {i}: {name}\n" for i, name in enumerate(self.names))

    def card_roles(self) -> dict[str, Role]:
        return {name: Role(project_class) for name, project_class in self.roles.items()}


PROJECT_LAYOUT = ClassLayout(tuple(CLASSES), {c: c for c in CLASSES})


def keeping_parent(parent: ModelCard) -> ClassLayout:
    """The parent's classes with its roles, the project classes it lacks in the slots of its last
    classes that stand for nothing; ValueError when it has too few such slots."""
    roles = {name: role.value for name, role in parent.roles.items() if role is not Role.OTHER}
    missing = [c for c in CLASSES if c not in roles.values()]
    free = [i for i, name in enumerate(parent.classes) if name not in roles]
    if len(free) < len(missing):
        raise ValueError(f"{parent.name} has {len(free)} classes no role reads; {len(missing)} are needed "
                         f"for {', '.join(missing)}")
    names = list(parent.classes)
    for slot, project_class in zip(free[len(free) - len(missing):], missing, strict=True):
        names[slot] = project_class
        roles[project_class] = project_class
    return ClassLayout(tuple(names), roles)
