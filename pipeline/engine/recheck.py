"""摄像头复核 (camera recheck): the patrol looks again, with the case's own camera and its detector,
at the spot of a case whose disposal was reported (or whose deadline has come), and says whether
the violation is still there, with an annotated after-photo. `patrol recheck` runs it and the
review store files the finding on the case (pipeline/review/recheck.py).

Which objects count: those of the roles the rule of the case's zone and violation watches (a
parking rule: vehicles; a stall rule: stalls; a bin rule: overflowing bins and garbage piles, or
fewer where the camera file narrows it), so the recheck judges by what filed the case.

Still present: a box of one of those roles overlaps the case's own box by IoU >=
``pipeline.rules.same_event.MIN_IOU``, the rule by which the project takes two boxes for one
object elsewhere (shadow runs, `patrol eval`). Not "anywhere in the zone near it": a street camera
stands still, so an object nobody moved keeps its box, while another car parked a few metres on is
a new violation the patrol files as a case of its own, not a disposal that failed.

Confidence (0..1, in the finding as it reads): present, the best overlapping box's score; absent,
1 - the highest score of a box of those roles touching the case's box at all (IoU > 0: something is
there, overlapping too little to be taken for the object), or 1 when none does, which means
nothing of the kind near the spot above the detector's score threshold (``--conf``).

The picture is the first one the camera delivers after connecting (a video file: its first
frame), within a timeout; a camera that cannot give one is a result saying so, not an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from pipeline.config import CameraConfig
from pipeline.config.camera import ZoneConfig
from pipeline.detect import FrameDetector
from pipeline.evidence.annotate import annotate_recheck
from pipeline.evidence.text import TextRenderer, default_text_renderer
from pipeline.ingest import SourceError, decode
from pipeline.ingest.source import GRAB_TIMEOUT_S, redact
from pipeline.rules.boxes import box_iou
from pipeline.rules.same_event import MIN_IOU
from pipeline.types import BBox, CaseRecord, Frame, RecheckFinding, RecheckResult, as_bbox

JPEG_QUALITY = 90  # as the case's own pictures (EvidenceRenderer)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A box of one of the case's roles that touches the case's box now."""

    bbox: BBox
    role: str
    score: float
    iou: float  # with the case's box

    @property
    def same_object(self) -> bool:
        return self.iou >= MIN_IOU


def judge(sightings: Iterable[Sighting]) -> tuple[bool, float]:
    """(still present, confidence) from the boxes touching the case's spot, as the module says."""
    near = list(sightings)
    overlapping = [sighting.score for sighting in near if sighting.same_object]
    if overlapping:
        return True, max(overlapping)
    return False, 1.0 - max((sighting.score for sighting in near), default=0.0)


class Rechecker:
    """Looks at the spot of a case through its camera (``cameras``: the camera files' configs)."""

    def __init__(self, cameras: Iterable[CameraConfig], detector: FrameDetector, *,
                 timeout_s: float = GRAB_TIMEOUT_S, text: TextRenderer | None = None) -> None:
        self._cameras = {camera.id: camera for camera in cameras}
        self._detector = detector
        self._timeout_s = timeout_s
        self._text = text if text is not None else default_text_renderer()

    def look(self, record: CaseRecord) -> RecheckResult:
        camera = self._cameras.get(record.camera_id)
        if camera is None:
            return RecheckResult(record.case_id, None, f"camera {record.camera_id} is in none of the camera files")
        zone = next((zone for zone in camera.zones if zone.id == record.zone_id), None)
        rule = next((rule for rule in zone.rules if rule.type == record.violation), None) if zone else None
        if zone is None or rule is None:
            return RecheckResult(record.case_id, None, f"camera {camera.id} has no {record.violation} rule in a zone "
                                 f"{record.zone_id} now: nothing to judge the case by")
        try:
            frame = grab_frame(camera, self._timeout_s, url=stream_of(camera, record))
        except SourceError as exc:
            return RecheckResult(record.case_id, None, f"camera unreachable: {exc}")
        sightings = self._sightings(frame, record.bbox, {role.value for role in rule.roles})
        still_present, confidence = judge(sightings)
        taken = datetime.fromtimestamp(frame.wall_ts, camera.tz)
        photo = self._after_photo(frame, record, zone, sightings, still_present, confidence, taken)
        return RecheckResult(record.case_id, RecheckFinding(
            still_present=still_present, confidence=round(confidence, 4),
            frame_wall=taken.isoformat(timespec="milliseconds"), model=self._detector.model_record(),
            photo_jpeg=photo))

    def _sightings(self, frame: Frame, case_bbox: BBox, roles: set[str]) -> list[Sighting]:
        detections = self._detector.detect([frame.image])[0]
        overlap = box_iou(detections.xyxy.astype(np.float64), np.array([case_bbox], np.float64))[:, 0]
        return [Sighting(as_bbox(box), str(role), float(score), float(iou))
                for box, role, score, iou in zip(detections.xyxy, detections.role, detections.score, overlap,
                                                 strict=True)
                if role in roles and iou > 0]

    def _after_photo(self, frame: Frame, record: CaseRecord, zone: ZoneConfig, sightings: list[Sighting],
                     still_present: bool, confidence: float, taken: datetime) -> bytes:
        # Without a CJK font Chinese would be unreadable boxes, so the caption falls back to English.
        if self._text.renders_chinese:
            verdict = f"摄像头复核 {taken:%Y-%m-%d %H:%M:%S} · {'仍在' if still_present else '已清除'}（置信度 {confidence:.2f}）"
        else:
            verdict = (f"recheck {taken:%Y-%m-%d %H:%M:%S} · {'still present' if still_present else 'cleared'} "
                       f"(confidence {confidence:.2f})")
        picture = annotate_recheck(
            frame.image, case_bbox=record.bbox, zone_polygon_px=zone.polygon_px(frame.size),
            found=[(sighting.bbox, f"{sighting.role} {sighting.score:.2f}") for sighting in sightings],
            caption=f"{verdict} · {record.case_id}", text=self._text)
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode the after-photo")
        return encoded.tobytes()


def stream_of(camera: CameraConfig, record: CaseRecord) -> str:
    """The input whose pixels the case's box is in: a camera with a sub-stream files its cases in
    the main stream's (``url``) unless the main stream was down (``evidence_stream`` sub)."""
    return camera.detect_url if record.evidence_stream == "sub" and camera.detect_url else camera.url


def grab_frame(camera: CameraConfig, timeout_s: float = GRAB_TIMEOUT_S, *, url: str | None = None) -> Frame:
    """The first picture ``camera`` delivers (from ``url``, default its ``url``); SourceError when it
    cannot be opened, or gives none within ``timeout_s`` (each network step is bounded by it too, so
    a dead camera cannot hang)."""
    url = url or camera.url
    stop = threading.Event()
    # Ends a stream that answers but never delivers a whole picture: decode checks it between packets.
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    frames = decode(url, camera_id=camera.id, analysis_fps=camera.analysis_fps, stop=stop,
                    open_timeout_s=timeout_s, read_timeout_s=timeout_s)
    try:
        return next(frames)
    except StopIteration:
        raise SourceError(f"camera {camera.id}: no picture from {redact(url)} within {timeout_s:g}s") from None
    finally:
        frames.close()
        timer.cancel()
