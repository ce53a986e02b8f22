"""Event codes and the evidence a reviewer opens for each case (the store itself: test_evidence_store.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from queue_contract import LOCATION

from pipeline.evidence import (
    CameraInfo,
    EventCodeError,
    EventCodeTable,
    EvidenceRenderer,
    HersheyText,
    LocalEvidenceStore,
    TrueTypeText,
    find_cjk_font,
    load_event_codes,
)
from pipeline.evidence.annotate import crop_window
from pipeline.types import CaseRecord, Frame, Violation

CASE_ID = "cam-07-illegal_parking-000042"
# 23:58 UTC on 1 May is 07:58 on 2 May in Shanghai: the key's date must be the local one.
CONFIRMED_TS = datetime(2024, 5, 1, 23, 58, tzinfo=UTC).timestamp()
BBOX = (100.0, 100.0, 200.0, 150.0)
FIRST_BBOX = (300.0, 200.0, 380.0, 260.0)
ZONE = np.array([[50, 80], [420, 80], [420, 300], [50, 300]], np.float32)
MODEL = {"name": "yolo11s-city-v3", "sha256": "ab" * 32}
CLIP = b"\x00\x00\x00\x18ftypmp42 pretend clip bytes"


def _scene(shade: int) -> np.ndarray:
    """A smooth street-like picture, so JPEG noise stays far below annotation strokes."""
    ys, xs = np.mgrid[0:360, 0:640]
    image = np.stack([(xs // 3) % 256, (ys // 2) % 256, np.full_like(xs, shade)], axis=-1)
    return image.astype(np.uint8)


def _violation(**changes: object) -> Violation:
    first = Frame("cam-07", seq=10, pts_s=12.0, wall_ts=CONFIRMED_TS - 300, image=_scene(60))
    trigger = Frame("cam-07", seq=310, pts_s=312.0, wall_ts=CONFIRMED_TS, image=_scene(90))
    fields = dict(
        case_id=CASE_ID,
        kind="illegal_parking",
        camera_id="cam-07",
        zone_id="no-parking-1",
        track_id=42,
        role="vehicle",
        first_seen_s=12.0,
        confirmed_s=312.0,
        bbox=np.array(BBOX, np.float32),  # as the tracker hands it over
        score=np.float32(0.875),
        first_frame=first,
        first_bbox=FIRST_BBOX,
        trigger_frame=trigger,
    )
    return Violation(**{**fields, **changes})


CAMERA = CameraInfo(
    camera_id="cam-07",
    name="人民路与解放路口东",
    location=dict(LOCATION),
)


@pytest.fixture
def store(tmp_path: Path) -> LocalEvidenceStore:
    return LocalEvidenceStore(tmp_path / "evidence")


@dataclass
class _Writer:
    """Renders a case and puts its files into ``store``, as delivery does."""

    renderer: EvidenceRenderer
    store: LocalEvidenceStore


def _writer(store: LocalEvidenceStore, codes: EventCodeTable | None = None, text: object = None,
            **options: object) -> _Writer:
    renderer = EvidenceRenderer(codes or load_event_codes(), "0.1.0", text=text or HersheyText(), **options)
    return _Writer(renderer, store)


def _write(writer: _Writer, violation: Violation | None = None, clip: bytes | None = CLIP) -> CaseRecord:
    case = writer.renderer.render(violation or _violation(), camera=CAMERA, zone_polygon_px=ZONE, clip_mp4=clip,
                                  model=MODEL)
    case.store_into(writer.store)
    return case.record


def _picture(store: LocalEvidenceStore, record: CaseRecord, name: str) -> np.ndarray:
    data = np.frombuffer(store.get(record.evidence[name].key), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 60).sum())


# --- the case's evidence -------------------------------------------------------------------


def test_case_files_are_laid_out_under_local_date_camera_and_case(
    store: LocalEvidenceStore,
) -> None:
    record = _write(_writer(store))

    prefix = f"2024-05-02/cam-07/{CASE_ID}/"
    names = ["annotated.jpg", "clip.mp4", "crop.jpg", "first_seen.jpg", "frame.jpg"]
    assert store.keys(prefix) == [prefix + name for name in [*names, "metadata.json"]]
    assert {name: item.key for name, item in record.evidence.items()} == {
        name: prefix + name for name in [*names, "metadata.json"]
    }
    assert store.get(prefix + "clip.mp4") == CLIP


def test_every_file_matches_its_sha256_in_metadata(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store))
    metadata = json.loads(store.get(record.evidence["metadata.json"].key))

    for item in record.evidence.values():
        assert hashlib.sha256(store.get(item.key)).hexdigest() == item.sha256
    assert metadata["evidence"] == {
        name: item.to_dict() for name, item in record.evidence.items() if name != "metadata.json"
    }


def test_metadata_describes_the_case(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store))
    metadata = json.loads(store.get(record.evidence["metadata.json"].key))

    expected = {
        "event_code": "0505",
        "event_name": "机动车乱停放",
        "event_category": "街面秩序",
        "camera_id": "cam-07",
        "camera_name": "人民路与解放路口东",
        "first_seen_s": 12.0,
        "first_seen_wall": "2024-05-02T07:53:00.000+08:00",
        "confirmed_wall": "2024-05-02T07:58:00.000+08:00",
        "dwell_s": 300.0,
        "bbox": list(BBOX),
        "first_bbox": list(FIRST_BBOX),
        "score": 0.875,
        "track_id": 42,
        "model": MODEL,
        "pipeline_version": "0.1.0",
    }
    assert {key: metadata[key] for key in expected} == expected
    assert metadata["location"]["grid_code"] == "330102001001"
    record_fields = record.to_dict()
    del record_fields["evidence"]  # metadata.json cannot list its own hash
    assert {key: metadata[key] for key in record_fields} == record_fields


def test_frame_is_the_clean_trigger_frame(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store))
    assert _changed_pixels(_picture(store, record, "frame.jpg"), _scene(90)) == 0


def test_annotation_marks_the_box_and_leaves_the_rest_of_the_scene(
    store: LocalEvidenceStore,
) -> None:
    record = _write(_writer(store))
    clean = _picture(store, record, "frame.jpg")
    annotated = _picture(store, record, "annotated.jpg")

    in_box = (slice(101, 153), slice(98, 203))  # below the label plate
    away = (slice(320, 360), slice(450, 640))  # outside box, zone, label and caption
    assert _changed_pixels(annotated[in_box], clean[in_box]) > 200
    assert _changed_pixels(annotated[away], clean[away]) == 0


def test_first_seen_marks_where_the_object_was_first_seen(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store))
    first_seen = _picture(store, record, "first_seen.jpg")

    at_first_box = (slice(201, 263), slice(298, 383))  # below the label plate
    at_trigger_box = (slice(102, 148), slice(102, 198))
    assert _changed_pixels(first_seen[at_first_box], _scene(60)[at_first_box]) > 200
    assert _changed_pixels(first_seen[at_trigger_box], _scene(60)[at_trigger_box]) == 0


def test_crop_is_the_box_plus_margin(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store, crop_margin=0.2))
    # 100x50 box grown by 20 % a side: x 80..220, y 90..160.
    assert _picture(store, record, "crop.jpg").shape == (70, 140, 3)


def test_crop_margin_stops_at_the_frame_edge() -> None:
    assert crop_window((10.0, 5.0, 110.0, 55.0), (640, 360), 0.2) == (0, 0, 130, 65)
    assert crop_window((600.0, 330.0, 640.0, 360.0), (640, 360), 0.5) == (580, 315, 640, 360)


def test_rewriting_a_case_replaces_it_identically(store: LocalEvidenceStore) -> None:
    writer = _writer(store)
    first = _write(writer)
    keys = store.keys()

    assert _write(writer) == first
    assert store.keys() == keys


def test_case_without_clip_has_no_clip_file(store: LocalEvidenceStore) -> None:
    record = _write(_writer(store), clip=None)
    assert "clip.mp4" not in record.evidence
    assert not store.exists(f"2024-05-02/cam-07/{CASE_ID}/clip.mp4")


def test_jpeg_quality_is_configurable(tmp_path: Path) -> None:
    sizes = {}
    for quality in (30, 95):
        store = LocalEvidenceStore(tmp_path / str(quality))
        record = _write(_writer(store, jpeg_quality=quality))
        sizes[quality] = len(store.get(record.evidence["annotated.jpg"].key))
    assert sizes[30] < sizes[95]


def test_violation_from_another_camera_is_refused(store: LocalEvidenceStore) -> None:
    with pytest.raises(ValueError, match="cam-99"):
        _write(_writer(store), _violation(camera_id="cam-99"))
    assert store.keys() == []


def _any_truetype_font() -> Path | None:
    listing = subprocess.run(
        ["fc-list", "--format", "%{file}\n", ":fontformat=TrueType"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return find_cjk_font() or (Path(sorted(listing)[0]) if listing else None)


def test_truetype_font_draws_the_label(store: LocalEvidenceStore) -> None:
    font = _any_truetype_font()
    if font is None:
        pytest.skip("no TrueType font on this machine")
    writer = _writer(store, text=TrueTypeText(font))
    record = _write(writer)
    clean = _picture(store, record, "frame.jpg")
    annotated = _picture(store, record, "annotated.jpg")

    label = (slice(75, 100), slice(100, 300))
    assert _changed_pixels(annotated[label], clean[label]) > 100


# --- event codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "code", "name", "category"),
    [
        # GB/T 30428.2, as listed in the issue
        ("illegal_parking", "0505", "机动车乱停放", "街面秩序"),
        ("nonmotor_parking", "0506", "非机动车乱停放", "街面秩序"),
        ("stall_encroachment", "0501", "无照经营游商", "街面秩序"),
        ("shop_spillover", "0504", "店外经营", "街面秩序"),
        ("bin_overflow", "0102", "暴露垃圾", "市容环境"),
        # additions outside the national standard
        ("bin_overflow_full", "0130", "垃圾满溢", "市容环境"),
        ("camera_fault", "0601", "故障报警", "扩展事件"),
    ],
)
def test_table_entry_maps_to_its_event_code(entry: str, code: str, name: str, category: str) -> None:
    event = load_event_codes().lookup(entry)
    assert (event.code, event.name, event.category) == (code, name, category)


def test_a_case_is_filed_under_the_entry_its_zone_chose(store: LocalEvidenceStore) -> None:
    stall = _violation(kind="stall_encroachment", role="stall", event="shop_spillover")

    record = _write(_writer(store), stall)

    assert (record.violation, record.event_code, record.event_name) == ("stall_encroachment", "0504", "店外经营")


def test_rule_type_missing_from_table_names_the_file(tmp_path: Path) -> None:
    table = tmp_path / "district_codes.yaml"
    table.write_text(
        'events:\n  illegal_parking: {code: "0505", name: 机动车乱停放, category: 街面秩序}\n',
        encoding="utf-8",
    )
    with pytest.raises(EventCodeError, match="bin_overflow") as raised:
        load_event_codes(table).lookup("bin_overflow")
    assert str(table) in str(raised.value)


def test_writer_refuses_a_rule_type_missing_from_table(
    tmp_path: Path, store: LocalEvidenceStore
) -> None:
    table = tmp_path / "district_codes.yaml"
    table.write_text("events: {}\n", encoding="utf-8")
    writer = _writer(store, load_event_codes(table))
    with pytest.raises(EventCodeError, match=r"district_codes\.yaml"):
        _write(writer)
    assert store.keys() == []


def test_unquoted_code_is_reported_with_the_file(tmp_path: Path) -> None:
    table = tmp_path / "district_codes.yaml"
    table.write_text(
        "events:\n  illegal_parking: {code: 0505, name: 机动车乱停放, category: 街面秩序}\n",
        encoding="utf-8",
    )
    with pytest.raises(EventCodeError, match=r"illegal_parking\.code must be a quoted") as raised:
        load_event_codes(table)
    assert str(table) in str(raised.value)


def test_district_table_overrides_the_default(tmp_path: Path, store: LocalEvidenceStore) -> None:
    table = tmp_path / "district_codes.yaml"
    table.write_text(
        'events:\n  illegal_parking: {code: "0599", name: 违章停车, category: 街面秩序}\n',
        encoding="utf-8",
    )
    writer = _writer(store, load_event_codes(table))
    record = _write(writer)
    assert (record.event_code, record.event_name) == ("0599", "违章停车")


# --- camera --------------------------------------------------------------------------------


def test_camera_without_grid_code_is_refused() -> None:
    location = {k: v for k, v in CAMERA.location.items() if k != "grid_code"}
    with pytest.raises(ValueError, match="grid_code"):
        CameraInfo("cam-07", "人民路口", location)


def test_camera_with_unknown_timezone_is_refused() -> None:
    with pytest.raises(Exception, match="Mars/Olympus"):
        CameraInfo("cam-07", "人民路口", {**CAMERA.location, "timezone": "Mars/Olympus"})
