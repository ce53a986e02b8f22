"""The dataset spec: which labelled sources a model is trained and measured on, and how they mix.

A spec is a YAML file (see ``annotations/datasets/street.yaml`` and its README). Paths in it are
relative to the spec file. Errors name the file and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator

from pipeline.config.loader import ConfigError, _field_path, _reason, _UniqueKeyLoader
from pipeline.config.strict_model import StrictModel
from pipeline.synth.actors import CLASSES

SourceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class SpecError(ConfigError):
    """A dataset spec cannot be used; the message names the file, the field and the reason."""


class RenderSpec(StrictModel):
    """How to make a synthetic source that is not there yet (``patrol synth DIR --dataset``)."""

    count: int = Field(gt=0, description="Scenes to render, train and val together.")
    seed: int = Field(0, description="The generator's seed: the same seed renders the same scenes.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of the scenes in the val split.")
    weather: bool = Field(False, description="Rain and glare on some scenes (pipeline/synth/weather.py).")
    paste_from: dict[SourceName, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description=(
            "Real objects pasted into each scene: source name -> most cut-outs per scene, cut from"
            " that source's training images only. For training sources only (give the source"
            " holdout: null): a scene with real pixels in it is no held-out synthetic."
        ),
    )


class SourceSpec(StrictModel):
    """One labelled image source in YOLO layout: ``<path>/<split>/images`` and ``<path>/<split>/labels``."""

    path: Path = Field(description="The source's folder, relative to the spec file.")
    classes: dict[str, str] | None = Field(
        None,
        description=(
            "Source class name (as in the source's data.yaml) -> project class. Source classes not"
            " listed are dropped. Omitted: the source is labelled with the project's own class map."
        ),
    )
    train: str = Field("train", description="Split folder the training images come from ('.' for a flat folder).")
    holdout: str | None = Field(
        "valid", description="Split folder held out for evaluation; null when the source has none."
    )
    holdout_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description=(
            "Hold out this share of the train folder instead (by a stable hash of each file name,"
            " so adding images later does not move old ones across); for single-folder sources."
        ),
    )
    count: int | None = Field(None, gt=0, description="Training images drawn from the source (repeats if more).")
    weight: float | None = Field(
        None, gt=0, description="Training images drawn, as a multiple of the source's size (2.0: each twice)."
    )
    optional: bool = Field(False, description="A missing folder is skipped with a note instead of an error.")
    render: RenderSpec | None = Field(None, description="Render the folder with `patrol synth` when it is missing.")
    licence: str = Field("", description="The data's licence, quoted in the model card.")
    attribution: str = Field("", description="Where the data comes from, quoted in the model card.")
    teach: list[str] = Field(
        default_factory=list,
        description=(
            "Project classes the spec's teacher labels in this source's training images, for the"
            " things its own labels leave out (the cars in a photo of garbage bags)."
        ),
    )

    @field_validator("classes")
    @classmethod
    def _project_classes(cls, classes: dict[str, str] | None) -> dict[str, str] | None:
        for source_class, project_class in (classes or {}).items():
            if project_class not in CLASSES:
                raise ValueError(
                    f"{source_class!r} maps to {project_class!r}, not a project class ({', '.join(CLASSES)})"
                )
        return classes

    @model_validator(mode="after")
    def _one_way_each(self) -> SourceSpec:
        if self.count is not None and self.weight is not None:
            raise ValueError("give count or weight, not both")
        for taught in self.teach:
            if taught not in CLASSES:
                raise ValueError(f"teach: {taught!r} is not a project class ({', '.join(CLASSES)})")
            if self.classes is None or taught in self.classes.values():
                raise ValueError(f"teach: {taught!r} is labelled by the source itself; "
                                 "a teacher adds only what it leaves out")
        if self.holdout_fraction is not None and self.holdout not in (None, self.train):
            raise ValueError("holdout_fraction splits the train folder: set holdout to null")
        return self


class TeacherSpec(StrictModel):
    """A pretrained detector (ONNX with a card) whose boxes label what a source's own labels leave out."""

    model: Path = Field(description="The teacher's ONNX file, relative to the spec file; its card maps its roles.")
    conf: float = Field(0.4, gt=0, lt=1, description="Its boxes below this score are not used as labels.")


class DatasetSpec(StrictModel):
    """Sources, how many training images each gives, and the split ultralytics validates on."""

    name: str = Field(min_length=1, description="The dataset's name, quoted in model cards.")
    seed: int = Field(0, description="Seed of the per-source image draws.")
    val: SourceName = Field(description="The source whose held-out split ultralytics validates on while training.")
    sources: dict[SourceName, SourceSpec] = Field(min_length=1)
    teacher: TeacherSpec | None = Field(None, description="Labels the classes each source names under `teach`.")

    @model_validator(mode="after")
    def _val_is_a_source(self) -> DatasetSpec:
        if self.val not in self.sources:
            raise ValueError(f"val: {self.val!r} is not one of the sources ({', '.join(self.sources)})")
        source = self.sources[self.val]
        if source.holdout is None and source.holdout_fraction is None:
            raise ValueError(f"val: source {self.val!r} has no held-out split")
        for name, spec in self.sources.items():
            pasted = spec.render.paste_from if spec.render is not None else {}
            for other in pasted:
                if other == name or other not in self.sources or self.sources[other].render is not None:
                    raise ValueError(f"sources.{name}.render.paste_from: {other!r} is not another source of real images")
            if pasted and (spec.holdout is not None or spec.holdout_fraction is not None):
                raise ValueError(f"sources.{name}: scenes with pasted real objects cannot be held out; set holdout: null")
            if spec.teach and self.teacher is None:
                raise ValueError(f"sources.{name}.teach: there is no teacher: name one under `teacher`")
        return self


class LoadedSpec:
    """A validated spec with its paths resolved against the spec file's folder."""

    def __init__(self, path: Path, spec: DatasetSpec) -> None:
        self.path = path
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def teacher_model(self) -> Path | None:
        teacher = self.spec.teacher
        return None if teacher is None else (self.path.parent / teacher.model).resolve()

    def folder(self, source: str) -> Path:
        return (self.path.parent / self.spec.sources[source].path).resolve()

    def error(self, field: str, reason: str) -> SpecError:
        return SpecError(f"{self.path}: invalid dataset spec\n  {field}: {reason}")


def load_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    path = Path(path)
    try:
        data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as error:
        raise SpecError(f"{path}: cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: YAML syntax error: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of dataset spec fields, got {type(data).__name__}")
    try:
        return LoadedSpec(path, DatasetSpec.model_validate(data))
    except ValidationError as error:
        problems = "\n".join(f"  {_field_path(e['loc'])}: {_reason(e)}" for e in error.errors())
        raise SpecError(f"{path}: invalid dataset spec\n{problems}") from None
