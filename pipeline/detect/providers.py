"""Choosing ONNX Runtime execution providers: the fastest available first, CPU always last."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

ProviderSpec = str | tuple[str, dict[str, object]]

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def default_tensorrt_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patrol" / "tensorrt"


def pick_providers(
    available: Sequence[str] | None = None, *, cache_dir: Path | None = None
) -> list[ProviderSpec]:
    """TensorRT, then CUDA, then CPU, keeping those that ``available`` (default: this
    onnxruntime build's) offers. Later providers run the nodes earlier ones cannot."""
    available = ort.get_available_providers() if available is None else available
    picked: list[ProviderSpec] = []
    if TENSORRT in available:
        # Building a TensorRT engine takes minutes; the caches make restarts take seconds.
        cache = cache_dir or default_tensorrt_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        picked.append(
            (
                TENSORRT,
                {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                },
            )
        )
    if CUDA in available:
        picked.append(CUDA)
    picked.append(CPU)
    return picked
