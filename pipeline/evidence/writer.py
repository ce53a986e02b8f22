"""Turns a confirmed violation into stored evidence files and the case record pointing at them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from pipeline.evidence.annotate import annotate, crop
from pipeline.evidence.camera import CameraInfo
from pipeline.evidence.event_codes import EventCodeTable
from pipeline.evidence.store import EvidenceStore
from pipeline.evidence.text import TextRenderer, default_text_renderer
from pipeline.types import CaseRecord, Violation, as_bbox

METADATA_VERSION = 1  # bump when a field of metadata.json changes meaning or goes away


class EvidenceWriter:
    """Writes ``{local date}/{camera_id}/{case_id}/{frame,annotated,crop,first_seen}.jpg``,
    ``clip.mp4`` when there is one and, last, ``metadata.json`` with every other file's sha256.

    Writing the same violation again rewrites the same keys, so a retry never forks a case.
    """

    def __init__(
        self,
        store: EvidenceStore,
        event_codes: EventCodeTable,
        pipeline_version: str,
        *,
        jpeg_quality: int = 90,
        crop_margin: float = 0.2,
        text: TextRenderer | None = None,
    ) -> None:
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        self._store = store
        self._event_codes = event_codes
        self._pipeline_version = pipeline_version
        self._jpeg_quality = jpeg_quality
        self._crop_margin = crop_margin
        self._text = text if text is not None else default_text_renderer()

    def write(
        self,
        violation: Violation,
        *,
        camera: CameraInfo,
        zone_polygon_px: np.ndarray,
        clip_mp4: bytes | None,
        model: dict[str, Any],
    ) -> CaseRecord:
        _check_inputs(violation, camera, model)
        event = self._event_codes.lookup(violation.kind)
        first_seen_at = datetime.fromtimestamp(violation.first_frame.wall_ts, camera.timezone)
        confirmed_at = datetime.fromtimestamp(violation.trigger_frame.wall_ts, camera.timezone)
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
        evidence = {
            file: self._store.put(f"{prefix}/{file}", self._jpeg(picture), "image/jpeg")
            for file, picture in pictures.items()
        }
        if clip_mp4 is not None:
            evidence["clip.mp4"] = self._store.put(f"{prefix}/clip.mp4", clip_mp4, "video/mp4")

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
            evidence=evidence,
        )
        metadata = {
            **record.to_dict(),
            "metadata_version": METADATA_VERSION,
            "event_category": event.category,
            "role": violation.role,
            "first_bbox": list(as_bbox(violation.first_bbox)),
            "zone_polygon_px": np.asarray(zone_polygon_px, np.float64).tolist(),
        }
        # Written last: a case directory with metadata.json is complete.
        evidence["metadata.json"] = self._store.put(
            f"{prefix}/metadata.json",
            json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8"),
            "application/json",
        )
        return replace(record, evidence=evidence)

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


