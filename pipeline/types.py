"""Value types that flow between the stages.

A stage imports only the types it consumes and produces from here, never a later stage.
Boxes are always ``x1, y1, x2, y2`` in pixels of the decoded frame; times are stream
presentation seconds (``pts_s``) unless a name says ``wall``.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np


class Role(StrEnum):
    """What a detected class *means* to the rules, independent of any model's class names."""

    VEHICLE = "vehicle"
    NON_MOTOR_VEHICLE = "non_motor_vehicle"
    PERSON = "person"
    STALL = "stall"
    BIN = "bin"
    OVERFLOWING_BIN = "overflowing_bin"
    GARBAGE_PILE = "garbage_pile"
    OTHER = "other"


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded picture of one camera, as handed to analysis."""

    camera_id: str
    seq: int  # index among this camera's analysed frames, from 0
    pts_s: float  # stream presentation time, seconds; monotonic per camera run
    wall_ts: float  # time.time() when decoded; recorded, never used for dwell
    image: np.ndarray  # H x W x 3, BGR, uint8

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """N boxes of one frame. ``track_id`` is filled by the tracker, ``None`` before it."""

    xyxy: np.ndarray  # (N, 4) float32, pixels
    score: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32, the model's own class index (of a DetectorSet: into its ``classes``)
    role: np.ndarray  # (N,) str (Role values)
    track_id: np.ndarray | None = None  # (N,) int64

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            score=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int32),
            role=np.zeros(0, dtype="<U24"),
        )

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(
            xyxy=self.xyxy[index],
            score=self.score[index],
            class_id=self.class_id[index],
            role=self.role[index],
            track_id=None if self.track_id is None else self.track_id[index],
        )


BBox = tuple[float, float, float, float]


def as_bbox(box) -> BBox:
    """Plain Python floats from any 4-sequence, so numpy scalars never reach JSON or equality checks."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


@dataclass(frozen=True, slots=True, eq=False)
class Violation:
    """One confirmed violation episode, with the frames that prove it. Rules emit one per episode."""

    case_id: str  # deterministic: the same stream replayed gives the same ids
    kind: str  # rule type: illegal_parking | stall_encroachment | bin_overflow | nonmotor_parking
    camera_id: str
    zone_id: str
    track_id: int
    role: str
    first_seen_s: float  # pts when the object was first seen in the zone (start of dwell)
    confirmed_s: float  # pts when dwell_s was reached
    bbox: BBox  # at confirmation
    score: float  # detector score at confirmation (mean over the dwell where known)
    first_frame: Frame  # the frame at first_seen_s
    first_bbox: BBox
    trigger_frame: Frame  # the frame at confirmed_s
    # The best look at the object during its dwell (largest box x score): where its plate is read.
    best_frame: Frame | None = None
    best_bbox: BBox | None = None
    # The event code table entry its zone's rule chose (``event:``); None: the entry named like ``kind``.
    event: str | None = None

    @property
    def dwell_s(self) -> float:
        return self.confirmed_s - self.first_seen_s

    @property
    def event_entry(self) -> str:
        """The entry of the event code table this case is filed under."""
        return self.event or self.kind


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One stored evidence file: its key in the evidence store and its sha256."""

    key: str
    sha256: str
    content_type: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "sha256": self.sha256, "content_type": self.content_type}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvidenceItem:
        return cls(key=data["key"], sha256=data["sha256"], content_type=data["content_type"])


class MalformedRecord(ValueError):
    """A case record this version cannot read: not JSON, a key it needs missing, or a value of the wrong type."""


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_box(value: object) -> bool:
    return isinstance(value, list | tuple) and len(value) == 4 and all(map(_is_number, value))


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


def _is_wall_clock(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_evidence(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(item, dict) and all(isinstance(item.get(f.name), str) for f in fields(EvidenceItem))
        for item in value.values())


def _is_plate(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _is_optional_text(value: object) -> bool:
    return value is None or isinstance(value, str)


# Every key a record is read from, with the JSON value it must hold: checked before a record is built, so a
# malformed one is refused as a whole instead of failing later in whoever stores, shows or forwards it.
_RECORD_KEYS: dict[str, tuple[Callable[[object], bool], str]] = {
    "case_id": (_is_text, "a string"),
    "violation": (_is_text, "a string"),
    "event_code": (_is_text, "a string"),
    "event_name": (_is_text, "a string"),
    "camera_id": (_is_text, "a string"),
    "camera_name": (_is_text, "a string"),
    "zone_id": (_is_text, "a string"),
    "track_id": (_is_whole, "an integer"),
    "first_seen_s": (_is_number, "a number"),
    "confirmed_s": (_is_number, "a number"),
    "dwell_s": (_is_number, "a number"),
    "bbox": (_is_box, "4 numbers"),
    "score": (_is_number, "a number"),
    "location": (_is_object, "an object"),
    "first_seen_wall": (_is_wall_clock, "an ISO 8601 time"),
    "confirmed_wall": (_is_wall_clock, "an ISO 8601 time"),
    "model": (_is_object, "an object"),
    "pipeline_version": (_is_text, "a string"),
    "evidence": (_is_evidence, "an object of {key, sha256, content_type} strings"),
    "plate": (_is_plate, "an object or null"),
    "clip_until_s": (_is_number, "a number"),
    "evidence_stream": (_is_optional_text, "a string or null"),
}
# Most cases have no plate, and records filed before plates existed never had the key; only a
# clip cut short has ``clip_until_s``.
# Only a camera with a sub-stream says which stream its pictures are from (``evidence_stream``).
_OPTIONAL_KEYS = frozenset({"plate", "clip_until_s", "evidence_stream"})


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are not JSON: the review store's canonical JSON refuses them, so reading must.
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """What is published on the case queue: a violation plus where its proof is stored."""

    case_id: str
    violation: str
    event_code: str
    event_name: str
    camera_id: str
    camera_name: str
    zone_id: str
    track_id: int
    first_seen_s: float
    confirmed_s: float
    dwell_s: float
    bbox: BBox
    score: float
    location: dict
    first_seen_wall: str  # ISO 8601, local wall clock of the frame at first_seen_s
    confirmed_wall: str
    model: dict  # {"name", "sha256", "providers"}; of several models also "members", each with its "roles"
    pipeline_version: str
    evidence: dict[str, EvidenceItem] = field(default_factory=dict)
    # {"text", "confidence", "colour", "frame": "best"|"trigger", "pts_s"} of a parking case's plate
    plate: dict | None = None
    # Stream seconds (the clock of confirmed_s) where clip.mp4 ends, when that is short of its post-roll:
    # the worker died, or the stream ended, before the post-roll was recorded. None: the clip is whole.
    clip_until_s: float | None = None
    # Of a camera with a sub-stream (detect_url): "main" when the photos are the main stream's,
    # "sub" when they are the analysed sub-stream's (the main stream was down); None: one stream.
    evidence_stream: str | None = None
    # Keys of a newer version's record that this one does not know (a rolling upgrade runs both): kept
    # so the record is stored, sealed and forwarded as it was published.
    unknown_keys: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy; ``CaseRecord.from_dict(record.to_dict()) == record``.

        A case without a plate has no ``plate`` key, so records filed before plates existed keep
        their bytes, and the sha256 sealed over them in the review audit still holds; nor has one
        whose clip is whole a ``clip_until_s``."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name in _RECORD_KEYS}
        data["bbox"] = list(self.bbox)
        data["location"] = dict(self.location)
        data["model"] = dict(self.model)
        data["evidence"] = {name: item.to_dict() for name, item in self.evidence.items()}
        if self.plate is None:
            del data["plate"]
        else:
            data["plate"] = dict(self.plate)
        if self.clip_until_s is None:
            del data["clip_until_s"]
        if self.evidence_stream is None:  # a camera of one stream: its records keep their bytes
            del data["evidence_stream"]
        return {**self.unknown_keys, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        """The record ``data`` holds; MalformedRecord naming every key that is missing or of the wrong type.

        Strict on what this version reads, so a bad record is refused instead of half-read (only ``plate``
        and ``clip_until_s`` may be missing); keys it does not know are kept in ``unknown_keys``, not refused."""
        if not isinstance(data, Mapping):
            raise MalformedRecord(f"a record is a JSON object, not {type(data).__name__}")
        problems = []
        for key, (fits, expected) in _RECORD_KEYS.items():
            if key not in data:
                if key not in _OPTIONAL_KEYS:
                    problems.append(f"{key} missing")
            elif not fits(data[key]):
                problems.append(f"{key} must be {expected}, not {reprlib.repr(data[key])}")
        if problems:
            raise MalformedRecord("; ".join(problems))
        return cls(
            **{
                **{key: value for key, value in data.items() if key in _RECORD_KEYS},
                "bbox": tuple(data["bbox"]),
                "location": dict(data["location"]),
                "model": dict(data["model"]),
                "evidence": {name: EvidenceItem.from_dict(item) for name, item in data["evidence"].items()},
            },
            unknown_keys={key: value for key, value in data.items() if key not in _RECORD_KEYS},
        )

    @classmethod
    def from_json(cls, text: str) -> CaseRecord:
        """The record in ``text`` as a queue holds it; MalformedRecord when it is not one."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise MalformedRecord(f"not JSON: {exc}") from None
        return cls.from_dict(data)


class BackendUnavailable(ConnectionError):
    """A production backend (Redis, S3/MinIO) cannot be reached right now; retrying later may work.

    Backends raise it instead of their client library's own errors, so the spool that retries
    them needs to know no client library.
    """


@dataclass(frozen=True, slots=True)
class CaseNote:
    """A line added to a filed case after the fact, e.g. the recovery of a camera whose fault was filed."""

    note_id: str  # unique; adding the same note twice keeps one
    case_id: str
    at_wall: str  # ISO 8601 with offset
    author: str  # "system" for the patrol's own notes
    kind: str  # e.g. camera_recovered
    text: str

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseNote:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RecheckFinding:
    """What a camera showed when the patrol looked again at the spot of a case (摄像头复核)."""

    still_present: bool  # an object of the case's kind still stands where the case's box was
    confidence: float  # 0..1, in the finding as it reads, present or cleared (pipeline/engine/recheck.py: how)
    frame_wall: str  # ISO 8601 with offset: when the camera took the picture looked at
    model: dict  # {"name", "sha256"} of the detector that looked
    photo_jpeg: bytes  # the after-photo: the case's box and what stands there now, annotated


@dataclass(frozen=True, slots=True)
class RecheckResult:
    """A recheck of one case: a finding, or why the camera could not be looked at (then ``finding`` is None)."""

    case_id: str
    finding: RecheckFinding | None
    problem: str | None = None  # e.g. "camera unreachable: camera cam-07: cannot open rtsp://…: Connection refused"
