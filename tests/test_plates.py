"""Plates on parking cases: the best look at the vehicle during its dwell, OCR on it, the plate in
the case record, its evidence and the review search; and a case is still filed when OCR fails."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import CameraConfig
from pipeline.delivery import CaseFiler, CaseSpool
from pipeline.engine import CameraPipeline, CaseMaker
from pipeline.evidence import (
    CameraInfo,
    EvidenceRenderer,
    HersheyText,
    LocalEvidenceStore,
    RenderedCase,
    load_event_codes,
)
from pipeline.evidence.plate import PlateReader, normalise
from pipeline.queue import SqliteCaseQueue
from pipeline.review.cases import CaseFilter
from pipeline.review.store import ReviewStore
from pipeline.rules import RuleEngine
from pipeline.types import CaseRecord, Detections, Frame, Violation

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
BLUE, GREEN, YELLOW = (10, 60, 170), (120, 200, 120), (230, 190, 30)  # RGB plate backgrounds
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
NOON = datetime(2024, 5, 1, 4, 0, tzinfo=UTC).timestamp()
MODEL = {"name": "patrol-street", "sha256": "0" * 64}


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader()


def plate_picture(text: str, background: tuple, ink: tuple, width: int = 220) -> np.ndarray:
    """A plate of the Chinese standard's proportions (440 x 140 mm) with ``text``, BGR."""
    if not CJK_FONT.is_file():
        pytest.fail(f"the plate tests need the CJK font {CJK_FONT} (apt-get install fonts-wqy-microhei)")
    height = width * 140 // 440
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, width - 3, height - 3], outline=ink, width=2)
    size = int(height * 0.7)
    while True:
        font = ImageFont.truetype(str(CJK_FONT), size)
        if draw.textlength(text, font=font) <= width * 0.9:
            break
        size -= 2
    draw.text(((width - draw.textlength(text, font=font)) / 2, height * 0.1), text, font=font, fill=ink)
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def car_picture(plate: np.ndarray | None, width: int = 420) -> np.ndarray:
    """A flat-shaded car from behind (body, rear window, lights), with ``plate`` on its bumper."""
    height = width * 2 // 3
    car = np.full((height, width, 3), (70, 70, 80), np.uint8)
    cv2.rectangle(car, (width // 20, height // 7), (width * 19 // 20, height * 9 // 10), (165, 160, 170), -1)
    cv2.rectangle(car, (width // 5, height // 5), (width * 4 // 5, height * 9 // 20), (60, 50, 40), -1)
    for x in (width // 10, width * 4 // 5):
        cv2.rectangle(car, (x, height // 2), (x + width // 10, height * 3 // 5), (30, 30, 200), -1)
    if plate is not None:
        top, left = height * 13 // 20, (width - plate.shape[1]) // 2
        car[top:top + plate.shape[0], left:left + plate.shape[1]] = plate
    return car


def street(car: np.ndarray, at: tuple[int, int] = (300, 280)) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A 960 x 720 street picture with ``car`` pasted at ``at``; the car's box."""
    image = np.full((720, 960, 3), (90, 95, 90), np.uint8)
    x, y = at
    image[y:y + car.shape[0], x:x + car.shape[1]] = car
    return image, (float(x), float(y), float(x + car.shape[1]), float(y + car.shape[0]))


@pytest.mark.parametrize("shown, background, ink, expected_colour", [
    ("鲁A·12345", BLUE, WHITE, "blue"),  # an ordinary car
    ("粤B·D12345", GREEN, BLACK, "green"),  # new energy: six characters after the office letter
    ("苏E·5678A", YELLOW, BLACK, "yellow"),  # a large vehicle
])
def test_the_reader_reads_a_rendered_plate_on_a_car(reader, shown, background, ink, expected_colour):
    reading = reader.read(car_picture(plate_picture(shown, background, ink)))
    assert reading is not None
    assert reading.text == shown.replace("·", "")
    assert reading.colour == expected_colour
    assert 0.6 <= reading.confidence <= 1.0


def test_a_car_without_a_plate_gives_none(reader):
    assert reader.read(car_picture(None)) is None


def test_text_that_is_no_plate_gives_none(reader):
    sign = plate_picture("停车场 P3", WHITE, BLACK)
    assert reader.read(car_picture(sign)) is None


@pytest.mark.parametrize("text, plate", [
    ("京A12345", "京A12345"), ("鲁A·12345", "鲁A12345"), ("鲁a-1234O", "鲁A12340"), ("粤B D12345", "粤BD12345"),
    ("沪A1234学", "沪A1234学"), ("A12345", None), ("鲁12345", None), ("鲁A123", None), ("鲁A12345678", None),
])
def test_plate_text_is_checked_against_the_chinese_pattern(text, plate):
    assert normalise(text) == plate


def _parking_camera() -> CameraConfig:
    return CameraConfig.model_validate({
        "id": "cam-07", "name": "test", "url": "none.mp4", "analysis_fps": 1,
        "location": {"lat": 36.7, "lon": 117.5},
        "zones": [{"id": "kerb", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                   "rules": [{"type": "illegal_parking", "dwell_s": 3, "max_drift": None}]}],
    })


def _tracked(box: tuple[float, float, float, float], score: float) -> Detections:
    return Detections(xyxy=np.array([box], np.float32), score=np.array([score], np.float32),
                      class_id=np.zeros(1, np.int32), role=np.array(["vehicle"]), track_id=np.array([1]))


def _parked_violation(plate_at_second: int = 2) -> Violation:
    """A car parked for 4 s, seen largest and surest at ``plate_at_second``; only there is its plate legible."""
    engine = RuleEngine(_parking_camera(), "test")
    violations = []
    for second in range(5):
        near = second == plate_at_second
        car = car_picture(plate_picture("鲁A·12345", BLUE, WHITE) if near else None, width=420 if near else 300)
        image, box = street(car)
        frame = Frame("cam-07", seq=second, pts_s=float(second), wall_ts=NOON + second, image=image)
        violations += engine.update(frame, _tracked(box, 0.9 if near else 0.6))
    (violation,) = violations
    return violation


def test_the_violation_carries_the_best_look_at_the_vehicle_during_its_dwell():
    violation = _parked_violation(plate_at_second=2)
    assert violation.best_frame.pts_s == 2.0
    assert violation.trigger_frame.pts_s == 3.0
    assert violation.best_bbox == (300.0, 280.0, 720.0, 560.0)


def _renderer(plates: PlateReader | None) -> EvidenceRenderer:
    return EvidenceRenderer(load_event_codes(), "test", text=HersheyText(), plates=plates)


def _render(renderer: EvidenceRenderer, violation: Violation) -> RenderedCase:
    camera = CameraInfo("cam-07", "人民路", {"lat": 36.7, "lon": 117.5, "address": "人民路 1 号", "grid_code": None,
                                            "timezone": "Asia/Shanghai"})
    return renderer.render(violation, camera=camera, zone_polygon_px=np.array([[0, 0], [960, 0], [960, 720], [0, 720]]),
                           clip_mp4=None, model=MODEL)


def test_the_renderer_puts_the_plate_into_the_case_and_its_evidence(reader):
    case = _render(_renderer(reader), _parked_violation())
    record = case.record
    assert record.plate["text"] == "鲁A12345"
    assert record.plate["frame"] == "best" and record.plate["pts_s"] == 2.0
    assert 0.6 <= record.plate["confidence"] <= 1.0
    stored = case.files[record.evidence["plate.jpg"].key]
    assert hashlib.sha256(stored).hexdigest() == record.evidence["plate.jpg"].sha256
    metadata = json.loads(case.files[record.evidence["metadata.json"].key])
    assert metadata["plate"] == record.plate
    assert metadata["evidence"]["plate.jpg"]["sha256"] == record.evidence["plate.jpg"].sha256
    assert CaseRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_case_record_without_a_plate_reads_as_before():
    record = _render(_renderer(None), _parked_violation()).record
    assert record.plate is None and "plate" not in record.to_dict() and "plate.jpg" not in record.evidence
    assert CaseRecord.from_dict(record.to_dict()) == record


def test_the_review_search_finds_a_case_by_its_plate(tmp_path, reader):
    record = _render(_renderer(reader), _parked_violation()).record
    store = ReviewStore(tmp_path / "review.sqlite3")
    try:
        assert store.cases.receive(record)
        found = store.cases.list_cases(CaseFilter(text="鲁A12345"), page=1, per_page=10)
        assert [case.case_id for case in found.cases] == [record.case_id]
        assert store.cases.list_cases(CaseFilter(text="京B99999"), page=1, per_page=10).total == 0
    finally:
        store.close()


class BrokenOcr(PlateReader):
    """The OCR engine blows up on every crop."""

    def _load(self):
        def explode(_image):
            raise RuntimeError("onnxruntime: invalid model")

        return explode


def test_the_patrol_still_files_a_case_when_ocr_fails(tmp_path):
    violation = _parked_violation()
    filer = CaseFiler(CaseSpool(tmp_path / "spool"), LocalEvidenceStore(tmp_path / "evidence"),
                      SqliteCaseQueue(tmp_path / "cases.sqlite3"))
    filer.start()
    cases, camera = CaseMaker(_renderer(BrokenOcr()), filer, MODEL), CameraPipeline(_parking_camera(), "test")
    cases.file(camera, violation)
    cases.complete(camera, violation.case_id)
    assert filer.close(drain_timeout_s=30) == 0
    queue = SqliteCaseQueue(tmp_path / "cases.sqlite3")
    try:
        record = queue.get(violation.case_id)
    finally:
        queue.close()
    assert record is not None and record.plate is None
    assert {"frame.jpg", "crop.jpg", "metadata.json"} <= set(record.evidence) and "plate.jpg" not in record.evidence
