"""Turns a confirmed violation into evidence: the files' bytes and the case record that names them.

Rendering touches no store. What to do with the bytes (stage them in the spool, upload them) is
the delivery package's job, so a case is rendered once and its sha256s are fixed from the start.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import cv2
import numpy as np

from pipeline.evidence.annotate import annotate, crop, crop_window
from pipeline.evidence.camera import CameraInfo
from pipeline.evidence.event_codes import EventCodeTable
from pipeline.evidence.plate import PlateReader
from pipeline.evidence.store import EvidenceStore, validate_key
from pipeline.evidence.text import TextRenderer, default_text_renderer
from pipeline.types import CaseRecord, EvidenceItem, Frame, Violation, as_bbox
from pipeline.vocabulary import ViolationKind

METADATA_VERSION = 1  # bump when a field of metadata.json changes meaning or goes away
PLATE_CROP_MARGIN = 0.05  # a plate sits at the vehicle box's lower edge: keep a little around it
# What a case's clip.mp4 covers: the engine cuts it from this long before the confirmation (from the
# keyframe at or before then) to this long after; the review page's caption says so.
CLIP_BEFORE_S = 8.0
CLIP_AFTER_S = 4.0  # post-roll: a violation is filed once the stream has gone this far past it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraFault:
    """A camera that has been offline past its threshold, as the fault case records it; or (state
    ``disk_full``, ``spool_unwritable``) one whose cases waited in memory while the worker's evidence
    spool took none, ``since_wall`` to ``filed_wall`` (``pipeline/engine/faults.py``)."""

    case_id: str
    since_wall: float  # when it stopped delivering video
    filed_wall: float
    stream_s: float  # the camera's stream clock when it stopped
    state: str  # offline or stalled
    reason: str
    last_frame: Frame | None  # its last analysed picture, if it ever delivered one
    history: tuple[tuple[str, str, float, str], ...] = ()  # recent (old, new, wall_ts, reason)
    details: Mapping[str, Any] | None = None  # more of the fault for metadata.json (a spool outage's span, cases)


@dataclass(frozen=True)
class RenderedCase:
    """A case ready to commit: its record (every evidence item with its sha256) and those files' bytes."""

    record: CaseRecord
    files: Mapping[str, bytes]  # by evidence key

    @property
    def case_id(self) -> str:
        return self.record.case_id

    def store_into(self, store: EvidenceStore) -> None:
        """Puts every file into ``store`` under its key; metadata.json last, as it marks a case complete."""
        for item in self.record.evidence.values():
            store.put(item.key, self.files[item.key], item.content_type)

    def with_clip(self, clip_mp4: bytes | None, *, clip_until_s: float | None = None) -> RenderedCase:
        """This case with ``clip_mp4`` as its clip (None: without one), sealed again: the clip's sha256,
        and metadata.json, which carries every other file's. ``clip_until_s``: where a clip cut short ends.
        A whole clip gives the bytes rendering with it in the first place gives."""
        metadata_item = self.record.evidence["metadata.json"]
        files = _Files(metadata_item.key.rsplit("/", 1)[0])
        for name, item in self.record.evidence.items():
            if name == "metadata.json" or (name == "clip.mp4" and clip_mp4 is not None):
                if clip_mp4 is not None and "clip.mp4" not in files.items:  # where rendering puts it
                    files.add("clip.mp4", clip_mp4, "video/mp4")
            elif name != "clip.mp4":
                files.items[name], files.data[item.key] = item, self.files[item.key]
        record = replace(self.record, evidence=dict(files.items), clip_until_s=clip_until_s)
        # metadata.json is the record plus what only it says: that part stays as it was
        metadata = {key: value for key, value in json.loads(self.files[metadata_item.key]).items()
                    if key not in self.record.to_dict()}
        return files.case(record, {**record.to_dict(), **metadata})


class _Files:
    """The files of one case as they are rendered, each with its sha256."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: dict[str, EvidenceItem] = {}
        self.data: dict[str, bytes] = {}

    def add(self, name: str, data: bytes, content_type: str) -> None:
        key = validate_key(f"{self.prefix}/{name}")
        self.items[name] = EvidenceItem(key=key, sha256=hashlib.sha256(data).hexdigest(), content_type=content_type)
        self.data[key] = data

    def case(self, record: CaseRecord, metadata: dict[str, Any]) -> RenderedCase:
        # metadata.json comes last: it carries every other file's sha256.
        self.add("metadata.json", json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8"),
                 "application/json")
        return RenderedCase(replace(record, evidence=dict(self.items)), dict(self.data))


class EvidenceRenderer:
    """Renders ``{local date}/{camera_id}/{case_id}/{frame,annotated,crop,first_seen}.jpg``,
    ``clip.mp4`` when there is one, ``plate.jpg`` when a parking case's plate was read and, last,
    ``metadata.json`` with every other file's sha256.

    Rendering the same violation again gives the same keys, so a retry never forks a case.
    """

    def __init__(
        self,
        event_codes: EventCodeTable,
        pipeline_version: str,
        *,
        jpeg_quality: int = 90,
        crop_margin: float = 0.2,
        text: TextRenderer | None = None,
        plates: PlateReader | None = None,
    ) -> None:
        """``plates``: reads the plate of each illegal-parking case's vehicle (none: no plates)."""
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        self._event_codes = event_codes
        self._pipeline_version = pipeline_version
        self._jpeg_quality = jpeg_quality
        self._crop_margin = crop_margin
        self._text = text if text is not None else default_text_renderer()
        self._plates = plates

    def render(
        self,
        violation: Violation,
        *,
        camera: CameraInfo,
        zone_polygon_px: np.ndarray,
        clip_mp4: bytes | None,
        model: dict[str, Any],
        streams: Mapping[str, Any] | None = None,
    ) -> RenderedCase:
        """``streams``: of a camera with a sub-stream, which input each picture and the clip are
        from (``photos``: main or sub, see ``pipeline/evidence/main_frame.py``), filed in
        metadata.json and, as ``evidence_stream``, in the record; None for a camera of one stream."""
        _check_inputs(violation, camera, model)
        event = self._event_codes.lookup(violation.event_entry)
        confirmed_at = datetime.fromtimestamp(violation.trigger_frame.wall_ts, camera.timezone)
        # not first_frame's clock: a case taken over from another worker shows its first look here
        first_seen_at = confirmed_at - timedelta(seconds=violation.dwell_s)
        prefix = f"{confirmed_at.date().isoformat()}/{camera.camera_id}/{violation.case_id}"
        # Without a CJK font the label would be unreadable boxes, so it falls back to English.
        name = event.name if self._text.renders_chinese else violation.kind
        trigger, first = violation.trigger_frame.image, violation.first_frame.image

        pictures = {
            "frame.jpg": trigger,
            "annotated.jpg": annotate(
                trigger,
                bbox=violation.bbox,
                zone_polygon_px=zone_polygon_px,
                label=f"{name} {violation.score:.2f} {violation.dwell_s:.0f}s",
                caption=_caption(confirmed_at, camera),
                text=self._text,
            ),
            "crop.jpg": crop(trigger, violation.bbox, self._crop_margin),
            "first_seen.jpg": annotate(
                first,
                bbox=violation.first_bbox,
                zone_polygon_px=zone_polygon_px,
                label=f"{name} #{violation.track_id}",
                caption=_caption(first_seen_at, camera),
                text=self._text,
            ),
        }
        plate = None
        if self._plates is not None and ViolationKind(violation.kind).reads_plate:
            plate, plate_picture = self._read_plate(violation)
            if plate_picture is not None:
                pictures["plate.jpg"] = plate_picture
        files = _Files(prefix)
        for file_name, picture in pictures.items():
            files.add(file_name, self._jpeg(picture), "image/jpeg")
        if clip_mp4 is not None:
            files.add("clip.mp4", clip_mp4, "video/mp4")

        record = CaseRecord(
            case_id=violation.case_id,
            violation=violation.kind,
            event_code=event.code,
            event_name=event.name,
            camera_id=camera.camera_id,
            camera_name=camera.name,
            zone_id=violation.zone_id,
            track_id=int(violation.track_id),
            first_seen_s=float(violation.first_seen_s),
            confirmed_s=float(violation.confirmed_s),
            dwell_s=float(violation.dwell_s),
            bbox=as_bbox(violation.bbox),
            score=float(violation.score),
            location=dict(camera.location),
            first_seen_wall=first_seen_at.isoformat(timespec="milliseconds"),
            confirmed_wall=confirmed_at.isoformat(timespec="milliseconds"),
            model=dict(model),
            pipeline_version=self._pipeline_version,
            evidence=dict(files.items),
            plate=plate,
            evidence_stream=None if streams is None else str(streams["photos"]),
        )
        metadata = {
            **record.to_dict(),
            "metadata_version": METADATA_VERSION,
            "event_category": event.category,
            "role": violation.role,
            "first_bbox": list(as_bbox(violation.first_bbox)),
            "zone_polygon_px": np.asarray(zone_polygon_px, np.float64).tolist(),
        }
        if streams is not None:
            metadata["streams"] = {**streams, "size": list(violation.trigger_frame.size)}
        return files.case(record, metadata)

    def render_camera_fault(
        self,
        fault: CameraFault,
        *,
        camera: CameraInfo,
        model: dict[str, Any],
    ) -> RenderedCase:
        """A 故障报警 case for a camera that has delivered no usable video since ``fault.since_wall``.

        Its proof is the camera's last analysed picture (when there was one) and the camera's
        recent state changes; the zone is empty and the box is the whole picture.
        """
        event = self._event_codes.lookup(ViolationKind.CAMERA_FAULT)
        since = datetime.fromtimestamp(fault.since_wall, camera.timezone)
        filed = datetime.fromtimestamp(fault.filed_wall, camera.timezone)
        prefix = f"{filed.date().isoformat()}/{camera.camera_id}/{fault.case_id}"
        files = _Files(prefix)
        bbox = (0.0, 0.0, 0.0, 0.0)
        if fault.last_frame is not None:
            picture = fault.last_frame.image
            height, width = picture.shape[:2]
            bbox = (0.0, 0.0, float(width), float(height))
            last_seen = datetime.fromtimestamp(fault.last_frame.wall_ts, camera.timezone)
            labelled = annotate(picture, bbox=bbox, zone_polygon_px=np.zeros((0, 2)),
                                label=event.name if self._text.renders_chinese else ViolationKind.CAMERA_FAULT.value,
                                caption=_caption(last_seen, camera), text=self._text)
            files.add("last_frame.jpg", self._jpeg(labelled), "image/jpeg")
        offline_s = fault.filed_wall - fault.since_wall
        record = CaseRecord(
            case_id=fault.case_id,
            violation=ViolationKind.CAMERA_FAULT.value,
            event_code=event.code,
            event_name=event.name,
            camera_id=camera.camera_id,
            camera_name=camera.name,
            zone_id="",
            track_id=0,
            first_seen_s=float(fault.stream_s),
            confirmed_s=float(fault.stream_s + offline_s),
            dwell_s=float(offline_s),
            bbox=bbox,
            score=1.0,
            location=dict(camera.location),
            first_seen_wall=since.isoformat(timespec="milliseconds"),
            confirmed_wall=filed.isoformat(timespec="milliseconds"),
            model=dict(model),
            pipeline_version=self._pipeline_version,
            evidence=dict(files.items),
        )
        metadata = {
            **record.to_dict(),
            "metadata_version": METADATA_VERSION,
            "event_category": event.category,
            "fault": {"state": fault.state, "reason": fault.reason, "offline_s": round(offline_s, 3),
                      "history": [list(change) for change in fault.history], **(fault.details or {})},
        }
        return files.case(record, metadata)

    def _read_plate(self, violation: Violation) -> tuple[dict | None, np.ndarray | None]:
        """The plate on the best look at the vehicle during its dwell (else at confirmation), and
        the plate's picture. Never raises: a case without a plate beats no case."""
        best = violation.best_frame is not None and violation.best_bbox is not None
        frame, bbox = (violation.best_frame, violation.best_bbox) if best else (violation.trigger_frame, violation.bbox)
        try:
            image = frame.image
            left, top, right, bottom = crop_window(bbox, (image.shape[1], image.shape[0]), PLATE_CROP_MARGIN)
            vehicle = image[top:bottom, left:right]
            reading = self._plates.read(vehicle)
            if reading is None:
                return None, None
            x1, y1, x2, y2 = reading.box
            plate = {**reading.to_dict(), "frame": "best" if best else "trigger", "pts_s": round(frame.pts_s, 3)}
            picture = vehicle[max(0, y1):y2, max(0, x1):x2].copy()
            return plate, picture if picture.size else None
        except Exception as exc:  # noqa: BLE001 — the plate is optional evidence
            log.warning("case %s: no plate: %s", violation.case_id, exc)
            return None, None

    def _jpeg(self, picture: np.ndarray) -> bytes:
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode an evidence JPEG")
        return encoded.tobytes()


def _check_inputs(violation: Violation, camera: CameraInfo, model: dict[str, Any]) -> None:
    if camera.camera_id != violation.camera_id:
        raise ValueError(
            f"violation {violation.case_id} is from camera {violation.camera_id!r},"
            f" not {camera.camera_id!r}"
        )
    for part in (camera.camera_id, violation.case_id):
        # Each becomes one directory level of the key layout.
        if not part or "/" in part:
            raise ValueError(f"{part!r} cannot be an evidence key segment")
    if not {"name", "sha256"} <= model.keys():
        raise ValueError("model must give at least 'name' and 'sha256'")


def _caption(moment: datetime, camera: CameraInfo) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %z} {camera.camera_id}"


