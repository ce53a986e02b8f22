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

TENSORRT_CACHE_ENV = "PATROL_TRT_CACHE"


def tensorrt_cache_dir() -> Path:
    """Where TensorRT engines and timing caches are kept: ``$PATROL_TRT_CACHE``, else the user's
    cache folder, which does not move with the working directory of a service or a replay."""
    configured = os.environ.get(TENSORRT_CACHE_ENV)
    if configured:
        return Path(configured).resolve()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patrol" / "tensorrt"


def tensorrt_options(cache_dir: Path, *, fp16: bool = False) -> dict[str, object]:
    """TensorRT provider options. Building an engine takes minutes; with the engine and timing
    caches in ``cache_dir`` a restarted worker loads it in seconds. ONNX Runtime names each cached
    engine by model, input shapes and precision, so several models can share one folder.
    ``fp16`` changes the numbers the model gives, so it is only on when asked for."""
    options: dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if fp16:
        options["trt_fp16_enable"] = True
    return options


def pick_providers(
    available: Sequence[str] | None = None, *, cache_dir: Path | None = None, fp16: bool = False
) -> list[ProviderSpec]:
    """TensorRT, then CUDA, then CPU, keeping those that ``available`` (default: this
    onnxruntime build's) offers. Later providers run the nodes earlier ones cannot.
    ``cache_dir`` (default ``tensorrt_cache_dir()``) is created when TensorRT is picked."""
    available = ort.get_available_providers() if available is None else available
    picked: list[ProviderSpec] = []
    if TENSORRT in available:
        cache = cache_dir or tensorrt_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        picked.append((TENSORRT, tensorrt_options(cache, fp16=fp16)))
    if CUDA in available:
        picked.append(CUDA)
    picked.append(CPU)
    return picked
