"""The runtime that joins the stages: one camera's per-frame path, replay, the live patrol, and
the composition root that builds the backends. The CLI, the fleet, training and the benchmarks
import it; it imports no CLI."""

from pipeline.engine.camera import CameraPipeline
from pipeline.engine.cases import CaseMaker
from pipeline.engine.compose import (
    DEFAULT_MODEL,
    BackendOptions,
    Backends,
    DetectorOptions,
    OptionError,
    build_backends,
    build_detector,
    embedded_cases,
    event_code_table,
)
from pipeline.engine.patrol import Patrol
from pipeline.engine.replay import ReplaySummary, case_line, replay
from pipeline.engine.timing import StageTimer
from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S

__all__ = [
    "CLIP_AFTER_S",
    "CLIP_BEFORE_S",
    "DEFAULT_MODEL",
    "BackendOptions",
    "Backends",
    "CameraPipeline",
    "CaseMaker",
    "DetectorOptions",
    "OptionError",
    "Patrol",
    "ReplaySummary",
    "StageTimer",
    "build_backends",
    "build_detector",
    "case_line",
    "embedded_cases",
    "event_code_table",
    "replay",
]
