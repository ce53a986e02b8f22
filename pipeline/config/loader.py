"""Reading camera files: YAML in, a validated ``CameraConfig`` or a ``ConfigError`` out."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .camera import CameraConfig
from .rules import RULE_TYPES

CAMERA_FILE_PATTERN = "*.yaml"
# A camera file is a few KiB. PyYAML takes seconds for a few hundred KiB of coordinates, so a
# bigger file is a mistake (a video, a log) that would stall the start before failing anyway.
MAX_CAMERA_FILE_BYTES = 256 * 1024
MAX_SHOWN_INPUT_CHARS = 80


class ConfigError(ValueError):
    """A camera file cannot be used; the message names the file, the field and the reason."""


def load_camera(path: str | os.PathLike[str], *, event_entries: Collection[str] | None = None,
                settings: Mapping[str, Any] | None = None) -> CameraConfig:
    """``event_entries``: the entries of the event code table the patrol files with; a rule's
    ``event`` must name one of them (None: not checked, for readers that file no cases).
    ``settings``: top-level fields set over the file's for this run (``--camera-setting``),
    validated with the rest of it."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of camera fields, got {type(data).__name__}")
    data.update(settings or {})
    try:
        return CameraConfig.model_validate(data, context={"base_dir": path.parent, "event_entries": event_entries})
    except ValidationError as error:
        problems = "\n".join(f"  {_field_path(e['loc'])}: {_reason(e)}" for e in error.errors())
        raise ConfigError(f"{path}: invalid camera file\n{problems}") from None


def camera_settings(texts: Iterable[str]) -> dict[str, Any]:
    """``--camera-setting KEY=VALUE`` options: top-level camera fields and their values, read as YAML."""
    settings = {}
    for text in texts:
        key, equals, value = text.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"--camera-setting {text!r}: expected KEY=VALUE, e.g. adaptive_rate=false")
        try:
            settings[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"--camera-setting {text!r}: the value is no YAML: {error}") from None
    return settings


def load_cameras(
    folder: str | os.PathLike[str], *, event_entries: Collection[str] | None = None
) -> list[CameraConfig]:
    """Every camera file in ``folder``, sorted by file name; camera ids must be unique.
    ``event_entries``: as for ``load_camera``."""
    return [camera for _, camera in load_camera_files(folder, event_entries=event_entries)]


def load_camera_files(
    folder: str | os.PathLike[str], *, event_entries: Collection[str] | None = None
) -> list[tuple[Path, CameraConfig]]:
    """As ``load_cameras``, each camera with the file it was read from."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    paths = sorted(folder.glob(CAMERA_FILE_PATTERN))
    if not paths:
        raise ConfigError(f"{folder}: no camera files ({CAMERA_FILE_PATTERN})")
    cameras: list[tuple[Path, CameraConfig]] = []
    path_of_id: dict[str, Path] = {}
    for path in paths:
        camera = load_camera(path, event_entries=event_entries)
        if camera.id in path_of_id:
            raise ConfigError(f"{path}: id: camera id {camera.id!r} is also used by {path_of_id[camera.id]}")
        path_of_id[camera.id] = path
        cameras.append((path, camera))
    return cameras


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key given twice instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CAMERA_FILE_BYTES + 1)  # never more: the file may be huge, or endless
        if len(raw) > MAX_CAMERA_FILE_BYTES:
            raise ConfigError(
                f"{path}: larger than {MAX_CAMERA_FILE_BYTES // 1024} KiB; a camera file is a few KiB of YAML"
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:  # PyYAML builds nested collections recursively
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in RULE_TYPES:  # pydantic names the union member chosen; users never wrote it
            path += f".{part}" if path else part
    return path or "(top level)"


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (misspelt?)"
    if error["type"] == "union_tag_not_found":
        return f"missing `type`, one of: {', '.join(RULE_TYPES)}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in {"missing", "value_error"} or isinstance(error["input"], (dict, list)):
        return message
    shown = repr(error["input"])
    if len(shown) > MAX_SHOWN_INPUT_CHARS:  # a 1 MiB name would otherwise be echoed whole
        shown = shown[:MAX_SHOWN_INPUT_CHARS] + "..."
    return f"{message} (got {shown})"
