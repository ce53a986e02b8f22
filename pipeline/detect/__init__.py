"""Detect stage: frames in, ``Detections`` out, through an ONNX detector and its model card."""

from pipeline.detect.card import ModelCard, ModelCardError, load_card, sha256_file, verify_card, write_card
from pipeline.detect.detector import Detector, FrameDetector, Prepared, RawOutputs, open_session
from pipeline.detect.ensemble import DetectorSet, DetectorSetError, Member
from pipeline.detect.motion import MotionGate, ZoneMotion
from pipeline.detect.providers import pick_providers

__all__ = [
    "Detector",
    "DetectorSet",
    "DetectorSetError",
    "FrameDetector",
    "Member",
    "ModelCard",
    "ModelCardError",
    "MotionGate",
    "Prepared",
    "RawOutputs",
    "ZoneMotion",
    "load_card",
    "open_session",
    "pick_providers",
    "sha256_file",
    "verify_card",
    "write_card",
]
