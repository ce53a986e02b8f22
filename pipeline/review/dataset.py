"""Active-learning hand-off: officers' decisions as YOLO training data (`patrol dataset export`).

- confirmed → a positive: the object's crop (the box grown by ``CONTEXT_MARGIN`` on each side,
  cut from the clean frame) with its box as one YOLO label line;
- rejected as ``detector_error`` (误检) → a hard negative: the same kind of crop with an empty
  label file, i.e. "there is nothing of our classes here".

Crops rather than whole frames, because a frame holds other objects nobody labelled; an
unlabelled car beside the labelled one would teach the model that cars are background. Rejections
for other reasons (not a violation, outside the zone, authorised) say the rule or the context was
wrong while the detector saw a real object, so they are no negatives and are left out. Each
image's source evidence key and sha256 go to ``manifest.jsonl``; a frame whose bytes no longer
match the sha256 filed with the case is skipped and reported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.evidence import EvidenceStore
from pipeline.evidence.annotate import crop_window
from pipeline.review.cases import CaseFilter, CaseRepository, ReviewCase
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import CONFIRMED_VIOLATIONS, RejectReason, Status
from pipeline.types import Role
from pipeline.vocabulary import ViolationKind

# The detector's class map (pipeline/synth/actors.py CLASSES; the same order as these roles).
CLASSES = tuple(role.value for role in Role if role is not Role.OTHER)
CONTEXT_MARGIN = 0.5
HARD_NEGATIVE_REASONS = frozenset({RejectReason.DETECTOR_ERROR})
FRAME = "frame.jpg"


@dataclass
class DatasetExport:
    out: Path
    positives: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # case id → why

    def line(self) -> str:
        return (f"dataset: {len(self.positives)} positives, {len(self.negatives)} hard negatives, "
                f"{len(self.skipped)} skipped, under {self.out}")


def export_reviewed(store: ReviewStore, evidence: EvidenceStore, out: Path, *, since: datetime,
                    actor: str) -> DatasetExport:
    """Write every case decided at or after ``since`` that carries a training signal."""
    result = DatasetExport(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    since_iso = since.astimezone(UTC).isoformat(timespec="milliseconds")
    manifest = []
    # A confirmed case filed into the 处置流程 since is a positive still.
    for status in [status for status in Status if status in CONFIRMED_VIOLATIONS or status is Status.REJECTED]:
        positive = status in CONFIRMED_VIOLATIONS
        for case in _all(store.cases, CaseFilter(status=status)):
            if case.decided_at is None or case.decided_at < since_iso:
                continue
            if status is Status.REJECTED and case.reject_reason not in HARD_NEGATIVE_REASONS:
                continue
            why_not = _export_one(case, evidence, out, positive=positive, manifest=manifest)
            if why_not:
                result.skipped[case.case_id] = why_not
            else:
                (result.positives if positive else result.negatives).append(case.case_id)
    _merge_manifest(out / "manifest.jsonl", manifest)
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images", "val": "images", "names": dict(enumerate(CLASSES))},
        allow_unicode=True, sort_keys=False), encoding="utf-8")
    store.audit.record_event(actor, "dataset_export", None, {
        "since": since_iso, "out": str(out), "positives": result.positives, "negatives": result.negatives,
        "skipped": result.skipped})
    return result


def _all(repository: CaseRepository, filters: CaseFilter) -> list[ReviewCase]:
    cases, page = [], 1
    while True:
        found = repository.list_cases(filters, page=page, per_page=200)
        cases.extend(found.cases)
        if len(cases) >= found.total or not found.cases:
            return cases
        page += 1


def _export_one(case: ReviewCase, evidence: EvidenceStore, out: Path, *, positive: bool,
                manifest: list[dict]) -> str | None:
    record = case.record
    item = record.evidence.get(FRAME)
    if item is None:
        return f"no {FRAME}"
    try:
        data = evidence.get(item.key)
    except KeyError:
        return f"{item.key} missing from the evidence store"
    if hashlib.sha256(data).hexdigest() != item.sha256:
        return f"{item.key} does not match its filed sha256; run patrol verify"
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        return f"{item.key} is not a picture OpenCV can read"
    height, width = frame.shape[:2]
    try:
        left, top, right, bottom = crop_window(record.bbox, (width, height), CONTEXT_MARGIN)
    except ValueError as exc:
        return str(exc)
    ok, encoded = cv2.imencode(".jpg", frame[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        return "OpenCV could not encode the crop"
    label = ""
    class_name = None
    if positive:
        # for records whose metadata names no role: the object a case of its kind is about
        kind = ViolationKind.known(record.violation)
        class_name = _role_of(case, evidence) or (kind.role if kind else None)
        if class_name not in CLASSES:
            return f"no detector class for {record.violation}"
        label = _yolo_line(CLASSES.index(class_name), record.bbox, (left, top, right, bottom)) + "\n"
    stem = case.case_id
    (out / "images" / f"{stem}.jpg").write_bytes(encoded.tobytes())
    (out / "labels" / f"{stem}.txt").write_text(label, encoding="utf-8")
    manifest.append({"case_id": stem, "kind": "positive" if positive else "hard_negative", "class": class_name,
                     "violation": record.violation, "decided_by": case.decided_by, "decided_at": case.decided_at,
                     "reject_reason": case.reject_reason.value if case.reject_reason else None,
                     "source_key": item.key, "source_sha256": item.sha256, "crop_xyxy": [left, top, right, bottom]})
    return None


def _merge_manifest(path: Path, rows: list[dict]) -> None:
    """One row per case: exporting an overlapping window again replaces a case's row, not repeats it."""
    by_case = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_case[row["case_id"]] = row
    by_case.update((row["case_id"], row) for row in rows)
    path.write_text("".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
                            for row in by_case.values()), encoding="utf-8")


def _role_of(case: ReviewCase, evidence: EvidenceStore) -> str | None:
    item = case.record.evidence.get("metadata.json")
    if item is None:
        return None
    try:
        return json.loads(evidence.get(item.key)).get("role")
    except (KeyError, ValueError):
        return None


def _yolo_line(class_id: int, bbox: tuple[float, float, float, float], window: tuple[int, int, int, int]) -> str:
    left, top, right, bottom = window
    width, height = right - left, bottom - top
    x1, y1 = max(bbox[0], left) - left, max(bbox[1], top) - top
    x2, y2 = min(bbox[2], right) - left, min(bbox[3], bottom) - top
    return (f"{class_id} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
