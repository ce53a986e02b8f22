"""Model cards: a YAML file beside each ONNX detector saying how to feed it and read it.

A card is tied to one exact weights file by its sha256, so a card can never silently describe
different weights than the ones that produced a case's evidence.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

import pipeline
from pipeline.types import Role

MODELS_DIR = Path(pipeline.__file__).parents[1] / "models"
DEFAULT_CARD_DIRS: tuple[Path, ...] = (MODELS_DIR / "cards",)
CARD_SUFFIX = ".card.yaml"

Layout = Literal["ultralytics", "yolox", "fastestdet"]
ResizeMode = Literal["letterbox_center", "letterbox_top_left", "stretch"]


class ModelCardError(Exception):
    """A card is missing, malformed, or does not match its weights file."""


class _Strict(pydantic.BaseModel):
    # A misspelt key in a hand-edited card must fail loudly, not fall back to a default.
    model_config = pydantic.ConfigDict(extra="forbid")


class InputSize(_Strict):
    width: int = pydantic.Field(gt=0)
    height: int = pydantic.Field(gt=0)


class Preprocess(_Strict):
    channel_order: Literal["bgr", "rgb"]
    scale: float  # pixel value multiplier: 1.0 (0-255) or 1/255 (0-1)
    resize: ResizeMode
    pad_value: int = pydantic.Field(default=114, ge=0, le=255)

    @pydantic.field_validator("scale")
    @classmethod
    def _known_scale(cls, scale: float) -> float:
        if not (math.isclose(scale, 1.0) or math.isclose(scale, 1 / 255)):
            raise ValueError(f"scale must be 1.0 or 1/255, got {scale}")
        return scale


class ModelCard(_Strict):
    name: str
    sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    layout: Layout
    input: InputSize
    dynamic_shape: bool = False  # the ONNX input accepts other sizes that are multiples of stride
    stride: int = pydantic.Field(default=32, gt=0)
    preprocess: Preprocess
    classes: list[str] = pydantic.Field(min_length=1)
    roles: dict[str, Role] = {}  # class name -> role; classes not listed are Role.OTHER
    # Provenance, free text: where the weights come from, what they were trained on, how well
    # they do. Nothing reads these at run time; they travel with the model into case records.
    source: str = ""
    licence: str = ""
    data: str = ""
    metrics: dict[str, Any] = {}
    notes: str = ""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        unknown = sorted(set(self.roles) - set(self.classes))
        if unknown:
            raise ValueError(f"roles name classes the model does not have: {unknown}")
        if self.dynamic_shape and (self.input.width % self.stride or self.input.height % self.stride):
            raise ValueError(f"dynamic_shape input {self.input} is not a multiple of stride {self.stride}")
        return self

    def role_of(self, class_name: str) -> Role:
        return self.roles.get(class_name, Role.OTHER)

    @property
    def mapped_roles(self) -> frozenset[Role]:
        """The roles this model finds: those its classes map to, less ``other``."""
        return frozenset(self.roles.values()) - {Role.OTHER}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    try:
        return ModelCard.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (pydantic.ValidationError, yaml.YAMLError) as e:
        raise ModelCardError(f"model card {path} is invalid: {e}") from e


def write_card(card: ModelCard, path: str | Path) -> None:
    Path(path).write_text(
        yaml.dump(card.model_dump(mode="json"), Dumper=_CardDumper, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )


def verify_card(card: ModelCard, model_path: str | Path) -> ModelCard:
    """``card``, if it describes exactly the weights in ``model_path``."""
    digest = sha256_file(model_path)
    if card.sha256 != digest:
        raise ModelCardError(
            f"model card {card.name!r} is for sha256 {card.sha256}, but {model_path} has sha256 {digest}: "
            "the weights changed since the card was written; write a new card for them"
        )
    return card


def load_card(model_path: str | Path, search_dirs: Sequence[Path] = DEFAULT_CARD_DIRS) -> ModelCard:
    """The card for ``model_path``: ``<stem>.card.yaml`` beside it, else any card in
    ``search_dirs`` whose sha256 is the file's."""
    model_path = Path(model_path)
    sibling = model_path.with_name(model_path.stem + CARD_SUFFIX)
    if sibling.is_file():
        return verify_card(read_card(sibling), model_path)
    digest = sha256_file(model_path)
    for directory in search_dirs:
        for path in sorted(Path(directory).glob("*" + CARD_SUFFIX)):
            card = read_card(path)
            if card.sha256 == digest:
                return card
    searched = ", ".join(str(d) for d in search_dirs)
    raise ModelCardError(
        f"no model card for {model_path} (sha256 {digest}): looked for {sibling.name} beside it "
        f"and for a *{CARD_SUFFIX} with that sha256 in: {searched}"
    )


class _CardDumper(yaml.SafeDumper):
    """Writes multi-line text (notes, licence) as readable ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_CardDumper.add_representer(str, _represent_str)
