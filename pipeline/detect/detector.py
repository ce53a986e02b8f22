"""``Detector``: an ONNX detector described by a model card, turning frames into ``Detections``.

``detect`` does it all: ``infer`` (letterbox and network) then ``decode`` (boxes and NMS).
``prepare`` / ``run`` / ``decode`` are its steps one by one, for a caller that times them.
``FrameDetector`` is what the patrol needs of a detector: one ``Detector``, or a ``DetectorSet``
of several (``pipeline.detect.ensemble``).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from pipeline.detect.card import ModelCard, ModelCardError, load_card, verify_card
from pipeline.detect.decoders import DECODERS
from pipeline.detect.letterbox import Placement, Size, paste, place, rectangular_input_size
from pipeline.detect.nms import grouped_nms
from pipeline.detect.providers import CPU, ProviderSpec, pick_providers
from pipeline.types import Detections, Role


@runtime_checkable
class FrameDetector(Protocol):
    """Frames in, ``Detections`` out, and what a case records of the models behind them."""

    parallel_runs: int  # ``detect`` calls worth running side by side

    @property
    def name(self) -> str: ...

    @property
    def providers(self) -> list[str]: ...

    def model_record(self) -> dict[str, object]:
        """The ``model`` of every case filed from these detections."""
        ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


class Prepared(NamedTuple):
    """Images of one input size, letterboxed into the network's input tensor."""

    indices: list[int]  # of the images, as given to ``prepare``
    placements: list[Placement]
    input_size: Size
    tensor: np.ndarray  # (N, 3, H, W) float32; a view of a reused buffer, valid until the next ``prepare`` step


class RawOutputs(NamedTuple):
    """The network's output for the images of one ``Prepared``, not yet decoded."""

    indices: list[int]
    placements: list[Placement]
    input_size: Size
    outputs: np.ndarray  # (N, ...) float32, owned by the caller


def open_session(
    model_path: str | Path, providers: Sequence[ProviderSpec] | None = None, intra_op_threads: int | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session set up as every detector's is (the benchmarks' bare session too)."""
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    # With more than one intra-op thread, idle ones sleep instead of spinning: decode, tracking and
    # evidence threads share these cores, and a spinning pool steals their time (on 2 busy cores a
    # 2-thread run took twice as long spinning as sleeping).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model_path), sess_options=options, providers=list(pick_providers() if providers is None else providers)
    )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Detector:
    """Runs one ONNX detector on batches of BGR frames.

    The network runs on the detector's own threads, up to ``parallel_runs`` runs at once: on a CPU
    each run is single-threaded and a batch is split across the cores, because whole frames side
    by side use cores better than one frame split over them (on 2 cores, YOLOv8n at 320x192: two
    single-thread runs at once 206 frames/s, one run on 2 threads 156). On a GPU one run at a time
    takes the whole batch. ``detect``, ``infer`` and ``decode`` may be called from any thread;
    ``prepare`` reuses the calling thread's buffers.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        card: ModelCard | None = None,
        providers: Sequence[ProviderSpec] | None = None,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        input_size: int | None = None,
        intra_op_threads: int | None = None,
        parallel_runs: int | None = None,
    ) -> None:
        """``input_size``: the input's long side for a ``dynamic_shape`` card (default: the card's).
        ``intra_op_threads``: ONNX Runtime's threads within one run (default 1). ``parallel_runs``:
        runs at once (default: on the CPU, the usable cores divided by ``intra_op_threads``; else 1).
        """
        self.model_path = Path(model_path)
        self.card = load_card(self.model_path) if card is None else verify_card(card, self.model_path)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self._decoder = DECODERS[self.card.layout]
        self._long_side = self._resolve_long_side(input_size)

        threads = intra_op_threads or 1
        self._session = open_session(self.model_path, providers, threads)
        model_input = self._session.get_inputs()[0]
        model_output = self._session.get_outputs()[0]
        self._input_name = model_input.name
        self._output_name = model_output.name
        self._batch_is_dynamic = not isinstance(model_input.shape[0], int)
        self._check_model_matches_card(model_input.shape, model_output.shape)

        roles = [self.card.role_of(name) for name in self.card.classes]
        self._roles = np.array([role.value for role in roles], dtype="<U24")
        # NMS per role, not per class: a COCO model boxing one car as `car` and as `truck` gives one
        # vehicle. Classes no rule reads (role other) stay in groups of their own.
        every_role = list(Role)
        self._nms_groups = np.array([every_role.index(role) if role is not Role.OTHER else len(every_role) + index
                                     for index, role in enumerate(roles)], np.int32)
        on_cpu = self.providers[0] == CPU
        self.parallel_runs = parallel_runs or (max(1, usable_cores() // threads) if on_cpu else 1)
        # the caller runs one share itself: the pool runs the others
        self._runs = ThreadPoolExecutor(max(1, self.parallel_runs - 1), thread_name_prefix="detect")
        self._buffers = threading.local()  # each thread's letterbox canvas and input tensors, by input size

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return self._session.get_providers()

    def model_record(self) -> dict[str, object]:
        return {"name": self.card.name, "sha256": self.card.sha256, "providers": self.providers}

    def input_size_for(self, frame_size: Size) -> Size:
        if self.card.dynamic_shape:
            return rectangular_input_size(frame_size, self._long_side, self.card.stride)
        return self.card.input.width, self.card.input.height

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Boxes in each image's own pixels. Images that share an input size run as one batch
        when the model's batch dimension is dynamic (split in ``parallel_runs`` on a CPU)."""
        results: list[Detections] = [Detections.empty()] * len(images)
        for raw in self.infer(images):
            for index, detections in zip(raw.indices, self.decode(raw), strict=True):
                results[index] = detections
        return results

    def infer(self, images: Sequence[np.ndarray]) -> list[RawOutputs]:
        """``prepare`` and ``run`` for all ``images``, in up to ``parallel_runs`` runs at once:
        what is left for ``decode``."""
        count = min(self.parallel_runs, len(images))
        chunks = [list(range(len(images) * k // count, len(images) * (k + 1) // count)) for k in range(count)]
        # the first chunk runs on the calling thread: one frame (replay) needs no hand-over at all
        running = [self._runs.submit(self._prepare_and_run, [images[i] for i in chunk]) for chunk in chunks[1:]]
        done = [self._prepare_and_run([images[i] for i in chunks[0]])] if chunks else []
        done += [future.result() for future in running]
        return [raw._replace(indices=[chunk[i] for i in raw.indices])
                for chunk, raws in zip(chunks, done, strict=True) for raw in raws]

    def _prepare_and_run(self, images: list[np.ndarray]) -> list[RawOutputs]:
        return [self.run(prepared) for prepared in self.prepare(images)]

    def prepare(self, images: Sequence[np.ndarray]) -> Iterator[Prepared]:
        """The images, grouped by input size and letterboxed into batches the model accepts.

        Each batch lives in a buffer of the calling thread reused by the next one of its size: run it
        before drawing the next.
        """
        groups: dict[Size, list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            groups[self.input_size_for(_size_of(image))].append(index)
        for input_size, indices in groups.items():
            step = len(indices) if self._batch_is_dynamic else 1
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                placements = [place(_size_of(images[i]), input_size, self.card.preprocess.resize) for i in chunk]
                tensor = self._fill_batch([images[i] for i in chunk], placements, input_size)
                yield Prepared(chunk, placements, input_size, tensor)

    def run(self, prepared: Prepared) -> RawOutputs:
        """The network on one prepared batch."""
        (outputs,) = self._session.run([self._output_name], {self._input_name: prepared.tensor})
        return RawOutputs(prepared.indices, prepared.placements, prepared.input_size, outputs)

    def decode(self, raw: RawOutputs) -> list[Detections]:
        """Boxes of each image of ``raw``, in frame pixels, after NMS; in ``raw.indices`` order."""
        return [
            self._postprocess(output, placement, raw.input_size)
            for output, placement in zip(raw.outputs, raw.placements, strict=True)
        ]

    def _fill_batch(
        self, images: list[np.ndarray], placements: list[Placement], input_size: Size
    ) -> np.ndarray:
        width, height = input_size
        if not hasattr(self._buffers, "tensors"):
            self._buffers.tensors, self._buffers.canvases = {}, {}
        tensors: dict[Size, np.ndarray] = self._buffers.tensors
        canvases: dict[Size, np.ndarray] = self._buffers.canvases
        buffer = tensors.get(input_size)
        if buffer is None or len(buffer) < len(images):
            buffer = tensors[input_size] = np.empty((len(images), 3, height, width), np.float32)
        canvas = canvases.get(input_size)
        if canvas is None:
            canvas = canvases[input_size] = np.empty((height, width, 3), np.uint8)
        preprocess = self.card.preprocess
        batch = buffer[: len(images)]
        for slot, image, placement in zip(batch, images, placements, strict=True):
            paste(image, placement, canvas, preprocess.pad_value)
            channels = canvas if preprocess.channel_order == "bgr" else canvas[:, :, ::-1]
            # One pass: HWC -> CHW, channel order and scale, straight into the reused buffer.
            np.multiply(channels.transpose(2, 0, 1), np.float32(preprocess.scale), out=slot)
        return batch

    def _postprocess(self, output: np.ndarray, placement: Placement, input_size: Size) -> Detections:
        candidates = self._decoder.decode(output, input_size, self.conf_threshold)
        keep = grouped_nms(candidates.xyxy, candidates.score, self._nms_groups[candidates.class_id], self.iou_threshold)
        xyxy = placement.to_frame(candidates.xyxy[keep])
        # A box that lay wholly in the padding has no area once clipped to the frame.
        visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        keep = keep[visible]
        class_id = candidates.class_id[keep]
        return Detections(
            xyxy=xyxy[visible], score=candidates.score[keep], class_id=class_id, role=self._roles[class_id]
        )

    def _resolve_long_side(self, input_size: int | None) -> int:
        card = self.card
        long_side = max(card.input.width, card.input.height)
        if input_size is None or input_size == long_side:
            return long_side
        if not card.dynamic_shape:
            raise ValueError(
                f"{self.model_path} has a fixed {card.input.width}x{card.input.height} input "
                f"(card {card.name!r}); input_size={input_size} needs a dynamic_shape model"
            )
        if input_size % card.stride:
            raise ValueError(f"input_size={input_size} is not a multiple of the model's stride {card.stride}")
        return input_size

    def _check_model_matches_card(self, input_shape: list, output_shape: list) -> None:
        """Catch a card written for other weights before the first frame, not by odd boxes."""
        card = self.card
        height, width = input_shape[2:4]
        if isinstance(width, int) and isinstance(height, int):
            if card.dynamic_shape:
                raise ModelCardError(
                    f"card {card.name!r} says dynamic_shape, "
                    f"but {self.model_path} has a fixed {width}x{height} input"
                )
            if (width, height) != (card.input.width, card.input.height):
                raise ModelCardError(
                    f"card {card.name!r} says input {card.input.width}x{card.input.height}, "
                    f"but {self.model_path} takes {width}x{height}"
                )
        channels = output_shape[1 + self._decoder.channel_axis]
        expected = self._decoder.box_channels + len(card.classes)
        if isinstance(channels, int) and channels != expected:
            raise ModelCardError(
                f"card {card.name!r} lists {len(card.classes)} classes ({expected} output channels "
                f"for layout {card.layout}), but {self.model_path} outputs {channels}"
            )


def _size_of(image: np.ndarray) -> Size:
    return image.shape[1], image.shape[0]
