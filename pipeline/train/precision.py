"""FP16 and INT8 variants of an FP32 ONNX detector, for faster inference at a measured accuracy cost.

FP16 halves the weights (GPU providers run it natively; ONNX Runtime's CPU provider runs most of
it through inserted casts). INT8 is ONNX Runtime's static quantization in QDQ form, calibrated on
real frames letterboxed exactly as the detector does it. Inputs and outputs stay float32 in both,
so the detector feeds and decodes them as it does the FP32 model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.detect import Detector, ModelCard

PRECISIONS = ("fp32", "fp16", "int8")


def to_fp16(fp32: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def sample_frames(videos: Sequence[Path], per_video: int) -> list[np.ndarray]:
    """``per_video`` frames spread evenly over each video (BGR)."""
    frames = []
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise ValueError(f"{video}: no frames to calibrate on")
        for index in np.linspace(0, total - 1, per_video).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
        capture.release()
    return frames


def detector_inputs(fp32: Path, card: ModelCard, frames: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """Each frame as the detector hands it to the network: letterboxed, scaled, one per batch."""
    detector = Detector(fp32, card=card)
    for frame in frames:
        for prepared in detector.prepare([frame]):
            yield prepared.tensor.copy()  # the detector reuses its buffer for the next frame


def to_int8(fp32: Path, card: ModelCard, out: Path, calibration: Sequence[np.ndarray]) -> Path:
    """Static INT8 (QDQ, per-channel weights) calibrated on ``calibration`` frames.

    The detection head's decoding (box distribution, sigmoid scores, the final concat of pixel
    boxes with 0..1 scores) stays in float: one int8 scale cannot hold both ranges, and scores
    would round to zero. So does the stem, the first convolution: quantised, it alone cost the
    street default 0.30 of its road-video vehicle mAP50 (0.94 -> 0.64; no other layer costs more
    than 0.07), for a few percent of the network's arithmetic."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs = detector_inputs(fp32, card, calibration)
            self._name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self._inputs, None)
            return None if tensor is None else {self._name: tensor}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes(onnx.load(str(prepared))))
    return out


def float_nodes(model) -> list[str]:
    """The nodes INT8 leaves in float: the stem (``/model.0/``) and the detection head past its
    convolution towers (ultralytics names them ``/model.N/cv2.*`` for boxes and ``/model.N/cv3.*``
    for classes); none for a graph not named the ultralytics way."""
    last = model.graph.node[-1].name
    if not last.startswith("/model."):
        return []
    head = last[: last.index("/", 1) + 1]
    return [node.name for node in model.graph.node
            if node.name.startswith("/model.0/")
            or node.name.startswith(head) and not node.name.startswith((f"{head}cv2.", f"{head}cv3."))]
