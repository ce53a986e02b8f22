"""The composition root: detector, case queue, evidence store, spool and filer from the options,
else the environment (``REDIS_URL``, ``S3_ENDPOINT`` and its keys), else the embedded default in
the workspace. The CLI, ``patrol serve`` beside a patrol, replay, training and the benchmarks
all build their backends here, so they cannot disagree on where a case goes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import pipeline
from pipeline.config import Workspace
from pipeline.delivery import CaseFiler, CaseSpool, SpoolBusy
from pipeline.detect import Detector, DetectorSet, DetectorSetError, FrameDetector, Member, ModelCardError
from pipeline.engine.cases import CaseMaker
from pipeline.evidence import (
    EventCodeError,
    EventCodeTable,
    EvidenceRenderer,
    LocalEvidenceStore,
    load_event_codes,
    open_evidence_store,
)
from pipeline.evidence.plate import PlateReader
from pipeline.queue import open_queue
from pipeline.types import Role

REPO = Path(pipeline.__file__).resolve().parents[1]
# the INT8 copy of models/patrol-street.onnx: 0.6 to 0.7 of its cost, no real set worse (its card)
DEFAULT_MODEL = REPO / "models" / "patrol-street-int8.onnx"


class OptionError(ValueError):
    """An option (or the environment variable standing for it) names something unusable."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


@dataclass(frozen=True)
class DetectorOptions:
    models: tuple[str, ...] = ()  # PATH or PATH:ROLE,...; none: the default model
    conf: float = 0.25
    threads: int | None = None


@dataclass(frozen=True)
class BackendOptions:
    workspace: Workspace
    queue_url: str | None = None
    evidence_url: str | None = None
    spool: Path | None = None
    event_codes: str | None = None
    read_plates: bool = True
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass
class Backends:
    """What a patrol or a replay files its cases through, and where they go."""

    cases: CaseMaker
    queue_url: str  # what the review page must read
    evidence_url: str | None  # None: the object store of the S3_* environment
    evidence_root: Path | None  # the evidence folder, when local

    @property
    def filer(self) -> CaseFiler:
        return self.cases.filer


def model_option(value: str) -> tuple[Path, frozenset[Role] | None]:
    """``PATH`` or ``PATH:ROLE,...`` of ``--model``: a model file and the roles taken from it
    (None: every role its card maps). The roles follow the last colon."""
    path, colon, names = value.rpartition(":")
    if not colon:
        return Path(value), None
    known = [role.value for role in Role if role is not Role.OTHER]
    unknown = [name for name in names.split(",") if name not in known]
    if unknown:
        raise OptionError(f"--model {value}", f"unknown role {', '.join(map(repr, unknown))} "
                          f"(roles: {', '.join(known)})")
    return Path(path), frozenset(Role(name) for name in names.split(","))


def build_detector(options: DetectorOptions) -> FrameDetector:
    """The model alone as it is, or a ``DetectorSet`` when there are several or roles are named."""
    values = options.models or (str(DEFAULT_MODEL),)
    models = [model_option(value) for value in values]
    detectors = []
    for value, (path, _) in zip(values, models, strict=True):
        if not path.is_file():
            raise OptionError(f"--model {value}", "no such file")
        try:
            detectors.append(Detector(path, conf_threshold=options.conf, intra_op_threads=options.threads))
        except ModelCardError:
            raise
        except Exception as exc:  # ONNX Runtime's load errors share no base class but Exception
            raise OptionError(f"--model {value}", f"cannot load it: {exc}") from exc
    if len(models) == 1 and models[0][1] is None:
        return detectors[0]
    try:
        return DetectorSet([Member(detector, roles or detector.card.mapped_roles)
                            for detector, (_, roles) in zip(detectors, models, strict=True)])
    except DetectorSetError as exc:
        raise OptionError("--model", str(exc)) from exc


def event_code_table(path: str | None) -> EventCodeTable:
    """The ``--event-codes`` table (None: the shipped one). Camera files are checked against its
    entries at start, before the backends that file with it are built."""
    try:
        return load_event_codes(path)
    except (EventCodeError, OSError, yaml.YAMLError) as exc:
        raise OptionError(f"--event-codes {path}", str(exc)) from exc


def build_backends(options: BackendOptions, model: dict) -> Backends:
    """Queue, evidence store, spool, renderer and filer; ``model`` is the record every case carries."""
    codes = event_code_table(options.event_codes)
    workspace, environ = options.workspace, options.environ
    evidence_url = options.evidence_url or (None if environ.get("S3_ENDPOINT") else str(workspace.evidence))
    try:
        store = open_evidence_store(evidence_url)
    except (ValueError, OSError) as exc:
        raise OptionError("--evidence / S3_*", str(exc)) from exc
    queue_url = options.queue_url or environ.get("REDIS_URL") or workspace.queue_url
    try:
        queue = open_queue(queue_url)
    except (ValueError, OSError) as exc:
        raise OptionError("--queue / REDIS_URL", str(exc)) from exc
    try:
        spool = CaseSpool(options.spool or workspace.spool)
    except (SpoolBusy, OSError) as exc:
        queue.close()
        raise OptionError("--spool", str(exc)) from exc
    renderer = EvidenceRenderer(codes, pipeline.__version__, plates=PlateReader() if options.read_plates else None)
    cases = CaseMaker(renderer, CaseFiler(spool, store, queue), model)
    root = store.root if isinstance(store, LocalEvidenceStore) else None
    return Backends(cases, queue_url, evidence_url, root)


def embedded_cases(workspace: Workspace, model: dict) -> CaseMaker:
    """The embedded default in ``workspace`` without plates or the environment: what the
    benchmarks, training's event scores and the tests file into."""
    return build_backends(BackendOptions(workspace, read_plates=False, environ={}), model).cases
