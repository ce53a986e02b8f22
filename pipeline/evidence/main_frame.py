"""A case of a camera with a sub-stream (``detect_url``), shown in its main stream's pixels.

The violation was found on the sub-stream: its frames are sub-stream pictures and its boxes are in
their pixels. Here the main stream's pictures of the same moments are decoded from its packets
(``DualRing.picture``), the boxes scaled by the ratio of the two resolutions (each axis on its own:
a sub-stream may be stretched, as a 704x576 one of a 16:9 main stream is), and the clip cut from
the main stream. What the main stream does not hold is taken from the sub-stream and said so:

- no main-stream picture of the moment of confirmation (the main stream was down): every picture
  and the clip as without a main stream, ``photos: sub``;
- the first sighting or the plate's best look older than the main stream's ring: the first-seen
  picture is the sub-stream's scaled up to the main stream's size (``first_seen.jpg: sub,
  upscaled``), the plate is read on the main stream's picture of confirmation (its ``frame``
  says ``trigger``).

``streams`` (for the case's metadata.json) names the input of every picture and of the clip, both
sizes and the clock offset used; the record's ``evidence_stream`` is where the photos came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import cv2

from pipeline.ingest import ClipError
from pipeline.ingest.dual import MAIN, SUB, DualRing, MainPicture
from pipeline.types import BBox, Frame, Violation

log = logging.getLogger(__name__)

# How long a case waits for a main stream that is receiving but not yet at the moment wanted (it
# may lag the sub-stream by its latency); a main stream that is down is not waited for.
MAIN_WAIT_S = 2.0


@dataclass(frozen=True)
class Shown:
    """What to render: the violation with its pictures and boxes in the pixels of one stream, the
    clip (None: none could be cut), and what ``metadata.json`` says of the two inputs."""

    violation: Violation
    clip: bytes | None
    streams: dict[str, Any]

    @property
    def photos(self) -> str:
        return self.streams["photos"]


def scale_box(box: BBox, scale: tuple[float, float]) -> BBox:
    """``box`` (x1, y1, x2, y2) in sub-stream pixels, in main-stream pixels."""
    sx, sy = scale
    x1, y1, x2, y2 = box
    return float(x1) * sx, float(y1) * sy, float(x2) * sx, float(y2) * sy


def as_main(frame: Frame, picture: MainPicture) -> Frame:
    """The main stream's picture of ``frame``'s moment, as a frame of the case (its wall time kept,
    so the case's times and keys are the sub-stream's)."""
    return Frame(frame.camera_id, frame.seq, picture.sub_s, frame.wall_ts, picture.image)


def upscaled(frame: Frame, size: tuple[int, int]) -> Frame:
    image = cv2.resize(frame.image, size, interpolation=cv2.INTER_LINEAR)
    return Frame(frame.camera_id, frame.seq, frame.pts_s, frame.wall_ts, image)


def on_main_stream(ring: DualRing, violation: Violation, *, clip_s: tuple[float, float],
                   wait_s: float = MAIN_WAIT_S) -> Shown:
    """``violation`` in the main stream's pixels where the main stream holds its moment, else as it
    is; with its clip, from the main stream when it holds the moment of confirmation."""
    sub_size = violation.trigger_frame.size
    trigger = ring.picture(violation.trigger_frame.pts_s, wait_s=wait_s)
    clip, clip_from = _clip(ring, violation, clip_s)  # what is recorded so far: its post-roll may be to come
    streams: dict[str, Any] = {"clip": clip_from, "sub_size": list(sub_size)}
    if trigger is None:
        log.warning("case %s: the main stream holds nothing of its confirmation; evidence from the sub-stream",
                    violation.case_id)
        return Shown(violation, clip, {**streams, "photos": SUB,
                                       "reason": "the main stream holds no picture of the confirmation"})
    size = trigger.size
    scale = (size[0] / sub_size[0], size[1] / sub_size[1])
    pictures = dict.fromkeys(("frame.jpg", "annotated.jpg", "crop.jpg"), MAIN)
    first = ring.picture(violation.first_frame.pts_s)
    if first is not None and first.size == size:
        first_frame, pictures["first_seen.jpg"] = as_main(violation.first_frame, first), MAIN
    else:
        first_frame, pictures["first_seen.jpg"] = upscaled(violation.first_frame, size), f"{SUB}, upscaled"
    trigger_frame = as_main(violation.trigger_frame, trigger)
    best_frame, best_bbox = None, None  # the plate is then read on the picture of confirmation, and says so
    if violation.best_frame is not None and violation.best_bbox is not None:
        best = ring.picture(violation.best_frame.pts_s)
        if best is not None and best.size == size:
            best_frame, best_bbox = as_main(violation.best_frame, best), scale_box(violation.best_bbox, scale)
    shown = replace(violation, trigger_frame=trigger_frame, bbox=scale_box(violation.bbox, scale),
                    first_frame=first_frame, first_bbox=scale_box(violation.first_bbox, scale),
                    best_frame=best_frame, best_bbox=best_bbox)
    return Shown(shown, clip, {**streams, "photos": MAIN, "pictures": pictures, "main_size": list(size),
                               "clock_offset_s": round(trigger.offset.main_minus_sub_s, 4),
                               "main_picture_s": round(trigger.main_s, 4)})


def _clip(ring: DualRing, violation: Violation, clip_s: tuple[float, float]) -> tuple[bytes | None, str | None]:
    try:
        return ring.cut(*clip_s, at_s=violation.confirmed_s)
    except (ClipError, OSError, ValueError) as exc:  # a case without a clip beats no case
        log.warning("case %s: no clip: %s", violation.case_id, exc)
        return None, None
