"""Paths every test module shares: the repo's own sample and model, and ../shared beside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real servers on loopback, each in its own plugin module.
pytest_plugins = ["fixture_redis", "fixture_s3", "fixture_rtsp"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_VIDEO = REPO / "streams" / "samples" / "sample-street.mp4"
SAMPLE_CAMERA = REPO / "streams" / "sample-street.yaml"
DEFAULT_MODEL = REPO / "models" / "patrol-street.onnx"
CAR_VIDEO = SHARED / "videos" / "car-detection.mp4"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing: tests need the real data beside the repo ({SHARED})")
    return SHARED
