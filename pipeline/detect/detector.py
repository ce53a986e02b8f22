"""``Detector``: an ONNX detector described by a model card, turning frames into ``Detections``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.detect.card import ModelCard, ModelCardError, load_card, verify_card
from pipeline.detect.decoders import DECODERS
from pipeline.detect.letterbox import Placement, Size, paste, place, rectangular_input_size
from pipeline.detect.nms import class_aware_nms
from pipeline.detect.providers import ProviderSpec, pick_providers
from pipeline.types import Detections


class Detector:
    """Runs one ONNX detector on batches of BGR frames.

    Not thread-safe: it reuses its input buffers between calls, so one inference loop owns it.
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
    ) -> None:
        """``input_size``: the input's long side for a ``dynamic_shape`` card (default: the card's)."""
        self.model_path = Path(model_path)
        self.card = load_card(self.model_path) if card is None else verify_card(card, self.model_path)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self._decoder = DECODERS[self.card.layout]
        self._long_side = self._resolve_long_side(input_size)

        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(self.model_path),
            sess_options=options,
            providers=list(pick_providers() if providers is None else providers),
        )
        model_input = self._session.get_inputs()[0]
        model_output = self._session.get_outputs()[0]
        self._input_name = model_input.name
        self._output_name = model_output.name
        self._batch_is_dynamic = not isinstance(model_input.shape[0], int)
        self._check_model_matches_card(model_input.shape, model_output.shape)

        self._roles = np.array([self.card.role_of(name).value for name in self.card.classes], dtype="<U24")
        self._canvases: dict[Size, np.ndarray] = {}
        self._buffers: dict[Size, np.ndarray] = {}

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return self._session.get_providers()

    def input_size_for(self, frame_size: Size) -> Size:
        if self.card.dynamic_shape:
            return rectangular_input_size(frame_size, self._long_side, self.card.stride)
        return self.card.input.width, self.card.input.height

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Boxes in each image's own pixels. Images that share an input size run as one batch
        when the model's batch dimension is dynamic."""
        results: list[Detections] = [Detections.empty()] * len(images)
        groups: dict[Size, list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            groups[self.input_size_for(_size_of(image))].append(index)
        for input_size, indices in groups.items():
            step = len(indices) if self._batch_is_dynamic else 1
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                placements = [
                    place(_size_of(images[i]), input_size, self.card.preprocess.resize) for i in chunk
                ]
                batch = self._fill_batch([images[i] for i in chunk], placements, input_size)
                (outputs,) = self._session.run([self._output_name], {self._input_name: batch})
                for index, output, placement in zip(chunk, outputs, placements, strict=True):
                    results[index] = self._postprocess(output, placement, input_size)
        return results

    def _fill_batch(
        self, images: list[np.ndarray], placements: list[Placement], input_size: Size
    ) -> np.ndarray:
        width, height = input_size
        buffer = self._buffers.get(input_size)
        if buffer is None or len(buffer) < len(images):
            buffer = self._buffers[input_size] = np.empty((len(images), 3, height, width), np.float32)
        canvas = self._canvases.get(input_size)
        if canvas is None:
            canvas = self._canvases[input_size] = np.empty((height, width, 3), np.uint8)
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
        keep = class_aware_nms(*candidates, self.iou_threshold)
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
