"""Detect stage: frames in, ``Detections`` out, through an ONNX detector and its model card."""

from pipeline.detect.card import ModelCard, ModelCardError, load_card, sha256_file, verify_card, write_card
from pipeline.detect.detector import Detector
from pipeline.detect.providers import pick_providers

__all__ = [
    "Detector",
    "ModelCard",
    "ModelCardError",
    "load_card",
    "pick_providers",
    "sha256_file",
    "verify_card",
    "write_card",
]
