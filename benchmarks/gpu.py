"""5. The GPU run: ONNX Runtime's TensorRT and CUDA execution providers, FP16, batched, and NVDEC
decoding through PyAV's hardware acceleration.

For each execution provider this ONNX Runtime build offers (TensorRT with FP16, TensorRT FP32,
CUDA), the detector (letterbox, network, NMS) runs on 1080p street frames in batches of 1 to 32;
the best analysed frames/s divided by 5 (the analysis fps) is the streams one GPU's network
keeps up with. Decoding is timed on the same H.264 1080p stream in software and, where PyAV's
FFmpeg has CUDA, on NVDEC (``av.codec.hwaccel.HWAccel('cuda')``); frames decoded per second
divided by the stream's fps is the streams the decoder keeps up with. Streams per GPU is the
smaller of the two.

Where there is no GPU, each GPU part is reported as not available, with the reason, and the CPU
provider is measured the same way, so the script and its figures are checked on any machine.
The whole live pipeline on a GPU is `patrol bench cameras` and `compare`, which pick TensorRT,
then CUDA, then CPU by themselves.
"""

from __future__ import annotations

import time

import av
import onnxruntime as ort

from benchmarks.common import Settings, Video, analysed_frames, street, write_result
from benchmarks.plot import bar_chart
from pipeline.detect import Detector
from pipeline.detect.providers import CPU, CUDA, TENSORRT, pick_providers
from pipeline.ingest import to_bgr

ANALYSIS_FPS = 5.0


def run(settings: Settings, video: Video | None = None) -> dict:
    """Default video: the 1080p synthetic street."""
    video = video or street(settings, 1920, 1080)
    frames, _ = analysed_frames(video, 32)
    largest = settings.budget.largest_batch
    result = {
        "video": video.describe(), "available_providers": ort.get_available_providers(),
        "inference": missing_gpu_providers() + [measure_provider(name, providers, frames, settings, largest)
                                                for name, providers in provider_setups()],
        "decode": [decode_rate(video, None, settings), decode_rate(video, "cuda", settings)],
    }
    measured = [run for run in result["inference"] if run["available"]]
    decoders = [run for run in result["decode"] if run["available"]]
    best_decode = max(decoders, key=lambda run: run["frames_per_s"])
    for run in measured:
        run["streams_by_network"] = run["best_fps"] / ANALYSIS_FPS
        run["streams_by_decoder"] = best_decode["frames_per_s"] / video.fps
        # On a GPU the network and NVDEC work side by side; on the CPU they share the cores, and
        # the cameras benchmark is the figure to use.
        gpu = run["provider"] != CPU
        run["streams_per_device"] = int(min(run["streams_by_network"], run["streams_by_decoder"])) if gpu else None
    result["gpu_measured"] = any(run["provider"] in (TENSORRT, CUDA) for run in measured)
    write_result(settings, "gpu", result)
    bar_chart(settings.out / "gpu.png", "Analysed 1080p frames/s, best batch, by execution provider",
              [run["name"] for run in measured], [run["best_fps"] for run in measured], "analysed frames/s")
    return result


def provider_setups() -> list[tuple[str, list]]:
    """(name, providers) to measure: the GPU setups this build offers, else the CPU alone."""
    picked = pick_providers()
    tensorrt = next((spec for spec in picked if isinstance(spec, tuple) and spec[0] == TENSORRT), None)
    setups = []
    if tensorrt is not None:
        setups.append(("tensorrt-fp16", [pick_providers(fp16=True)[0], CUDA, CPU]))
        setups.append(("tensorrt-fp32", [tensorrt, CUDA, CPU]))
    if CUDA in picked:
        setups.append(("cuda-fp32", [CUDA, CPU]))
    return setups or [("cpu", [CPU])]


def missing_gpu_providers() -> list[dict]:
    """The GPU part as not available, saying why, when this ONNX Runtime build has no GPU provider
    at all: on a GPU machine that is the package installed, not the machine."""
    available = ort.get_available_providers()
    if CUDA in available or TENSORRT in available:
        return []
    return [{"name": "cuda", "provider": CUDA, "available": False,
             "reason": f"this ONNX Runtime build ({ort.__version__}; {', '.join(available)}) has no CUDA or "
                       "TensorRT provider: a GPU machine needs the onnxruntime-gpu package in place of onnxruntime"}]


def measure_provider(name: str, providers: list, frames: list, settings: Settings, largest: int) -> dict:
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    try:
        detector = Detector(settings.model, providers=providers, conf_threshold=settings.conf,
                            intra_op_threads=settings.threads)
    except Exception as exc:  # noqa: BLE001 - a provider that fails to start is a result, not a crash
        return {"name": name, "provider": wanted, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
    if detector.providers[0] != wanted:  # ONNX Runtime falls back quietly when a provider cannot start
        return {"name": name, "provider": wanted, "available": False,
                "reason": f"session runs on {detector.providers[0]} instead"}
    fps_by_batch = {}
    for size in [1, 2, 4, 8, 16, 32]:
        if size > largest:
            break
        batch = [frames[index % len(frames)] for index in range(size)]
        for _ in range(3):  # TensorRT builds its engine per input shape on the first runs
            detector.detect(batch)
        repeats = max(3, 64 // size)
        started = time.perf_counter()
        for _ in range(repeats):
            detector.detect(batch)
        fps_by_batch[str(size)] = repeats * size / (time.perf_counter() - started)
    best = max(fps_by_batch, key=fps_by_batch.get)
    print(f"bench gpu {name}: best {fps_by_batch[best]:.0f} analysed frames/s at batch {best}", flush=True)
    return {"name": name, "provider": wanted, "available": True, "providers": detector.providers,
            "input_size": list(detector.input_size_for((frames[0].shape[1], frames[0].shape[0]))),
            "fps_by_batch": fps_by_batch, "best_batch": int(best), "best_fps": fps_by_batch[best]}


def decode_rate(video: Video, device: str | None, settings: Settings) -> dict:
    """Frames/s of decoding ``video`` (and converting the analysed ones to BGR), in software or on
    ``device`` (PyAV hwaccel)."""
    name = f"nvdec ({device})" if device else "software"
    options = {}
    if device is not None:
        from av.codec.hwaccel import HWAccel, hwdevices_available

        if device not in hwdevices_available():
            return {"name": name, "available": False, "reason": f"PyAV's FFmpeg has no {device} support"}
        options["hwaccel"] = HWAccel(device_type=device, allow_software_fallback=False)
    limit = 10 * settings.budget.bare_inputs
    sampled_every = max(1, round(video.fps / ANALYSIS_FPS))  # as the patrol: every frame decoded, the sampled converted
    try:
        with av.open(str(video.path), **options) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # as the patrol: one decoding thread per camera
            frames = 0
            started = time.perf_counter()
            for picture in container.decode(stream):
                if frames % sampled_every == 0:
                    to_bgr(picture)
                frames += 1
                if frames >= limit:
                    break
            seconds = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - no device, no driver, no permission: all mean not available here
        return {"name": name, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
    print(f"bench gpu decode {name}: {frames / seconds:.0f} frames/s", flush=True)
    return {"name": name, "available": True, "frames": frames, "frames_per_s": frames / seconds}
