"""处置经过 in the 案卷 and the evidence bundle: a case taken round the 处置流程 through the API (立案, 派遣,
处置 with a field photo reported late, a camera recheck that finds the car still there, 核查, 结案)
shows how it was handled: its 立案号, unit, deadline, who took each step (姓名 and 执法证号), overdue,
the time to close, and the field photo and after-photo with their sha256s, in the PDF and in the zip.

The street is the small one made in place (tests/loop_support.py) on a frozen clock: dispatched at
09:00 with the 2 h deadline of illegal parking, disposed at 11:30 (30 minutes late), rechecked at
11:40, verified and closed at 12:00, 3 h after 立案.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from loop_support import START, Api, FrozenClock, case_ids, loop_api, picture, utc
from pypdf import PdfReader

from pipeline.review.dossier import find_dossier_font
from pipeline.review.recheck import CameraRechecks
from pipeline.types import RecheckFinding

OFFICER = ("officer1", "王小明", "ZQ-1024")
CHIEF = ("chief", "张强", "ZQ-0001")
FIELD_PHOTO = picture("JPEG", (30, 160, 60))
AFTER_PHOTO = picture("JPEG", (200, 200, 20))
MODEL = {"name": "patrol-street", "sha256": "0" * 64}


@dataclass
class Walked:
    api: Api
    var: Path
    case_id: str
    case_number: str


@pytest.fixture
def walked(tmp_path, monkeypatch) -> Iterator[Walked]:
    """A case taken round the whole loop as the module's docstring says."""
    var = tmp_path / "var"
    clock = FrozenClock(monkeypatch, START)
    with loop_api(var) as api:
        review = api.client.app.state.review
        for name, display_name, badge in (OFFICER, CHIEF):
            review.store.accounts.set_profile(name, display_name, badge, actor="test-setup")
        case_id = case_ids(api)[0]
        api.confirm(case_id)
        case_number = api.file(case_id)["case_number"]
        api.dispatch(case_id)  # traffic-police, deadline 11:00
        clock.advance(hours=2, minutes=30)
        api.dispose(case_id, [("site.jpg", FIELD_PHOTO)])
        clock.advance(minutes=10)
        CameraRechecks(review.store.cases, review.evidence).record(
            case_id, RecheckFinding(True, 0.87, "2026-12-07T11:39:58+08:00", MODEL, AFTER_PHOTO))
        clock.advance(minutes=20)
        api.verify(case_id, note="现场已恢复")
        api.close(case_id)
        yield Walked(api, var, case_id, case_number)


def _dossier(walked: Walked) -> tuple[str, PdfReader]:
    if find_dossier_font() is None:
        pytest.fail("the dossier needs a CJK font: apt-get install fonts-wqy-microhei", pytrace=False)
    answer = walked.api.client.get(f"/api/cases/{walked.case_id}/dossier.pdf", headers=walked.api.headers("chief"))
    assert answer.status_code == 200, answer.text
    reader = PdfReader(io.BytesIO(answer.content))
    return _words("".join(page.extract_text() for page in reader.pages)), reader


def _words(text: str) -> str:
    """Without white space: table cells wrap long lines, and the text is read back with spaces of its own."""
    return re.sub(r"\s+", "", text)


def _bundle(walked: Walked) -> dict[str, bytes]:
    answer = walked.api.client.get(f"/api/cases/{walked.case_id}/bundle", headers=walked.api.headers("officer1"))
    assert answer.status_code == 200, answer.text
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def _sums(files: dict[str, bytes]) -> dict[str, str]:
    lines = files["SHA256SUMS"].decode().splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def _tamper(walked: Walked, name: str) -> bytes:
    """Replace the stored bytes of the case's file ``name`` behind the service's back; the new bytes."""
    key = walked.api.client.app.state.review.store.cases.get(walked.case_id).files()[name].key
    replaced = picture("JPEG", (0, 0, 250))
    (walked.var / "evidence" / key).write_bytes(replaced)
    return replaced


def test_the_dossier_of_a_closed_case_shows_how_it_was_handled(walked):
    text, reader = _dossier(walked)
    field_sha256, after_sha256 = hashlib.sha256(FIELD_PHOTO).hexdigest(), hashlib.sha256(AFTER_PHOTO).hexdigest()
    assert "三、处置经过" in text and "四、证据照片" in text  # after the decision, before the detection evidence
    for expected in (
            f"立案号{walked.case_number}",
            "章丘交警大队双山中队（traffic-police）",  # the unit
            "处置期限2026-12-07 11:00:00",  # the deadline, on the district's clock
            "派遣至 章丘交警大队双山中队，处置期限 2026-12-07 11:00:00",
            "第 1 次上报处置，现场照片 1 张：disposal-1-1.jpg（超过处置期限 30 分钟）",
            "recheck-1.jpg：仍在（置信度 0.87），复核未通过",  # the camera's finding, flagged
            "超期是：第 1 次处置于期限（2026-12-07 11:00:00）后 30 分钟上报",
            "2026-12-07 12:00:00，立案至结案用时 3 小时",  # the time to close
            "王小明（执法证号 ZQ-1024）", "张强（执法证号 ZQ-0001）", "系统（摄像头复核）",
            "摄像头复核 recheck-1.jpg 显示仍在", "说明：现场已恢复",
            "处置现场照片", "摄像头复核画面", f"disposal-1-1.jpg{field_sha256}一致", f"recheck-1.jpg{after_sha256}一致"):
        assert _words(expected) in text, expected
    steps = ["立案", "派遣", "上报处置", "摄像头复核", "核查通过", "结案"]
    section = text[text.index("三、处置经过"):text.index("四、证据照片")]
    positions = [section.index(f"{label}", section.index("时间步骤操作人内容")) for label in steps]
    assert positions == sorted(positions), positions  # the steps in the order taken
    assert FIELD_PHOTO in _jpegs(reader) and AFTER_PHOTO in _jpegs(reader)  # the thumbnails, as filed


def _jpegs(reader) -> list[bytes]:
    """The JPEG streams the PDF embeds, as stored (a DCTDecode stream is the JPEG file itself). Read
    without PIL, whose Image.open ultralytics patches once any test in the process has imported it."""
    found = []
    for page in reader.pages:
        for reference in page["/Resources"].get("/XObject", {}).values():
            image = reference.get_object()
            if image.get("/Subtype") == "/Image" and image.get("/Filter") == "/DCTDecode":
                found.append(image.get_data())
    return found


def test_the_bundle_holds_the_field_photo_the_after_photo_and_the_loop(walked):
    # Renamed since: each step names its officer as its entry recorded them, as the decision does.
    walked.api.client.app.state.review.store.accounts.set_profile("officer1", "王晓明", "ZQ-2048", actor="root")
    files = _bundle(walked)
    assert files["evidence/disposal-1-1.jpg"] == FIELD_PHOTO and files["evidence/recheck-1.jpg"] == AFTER_PHOTO
    sums = _sums(files)
    for path in ("evidence/disposal-1-1.jpg", "evidence/recheck-1.jpg", "case.json"):
        assert sums[path] == hashlib.sha256(files[path]).hexdigest(), path
    assert "TAMPERED.txt" not in files
    manifest = json.loads(files["manifest.json"])
    assert {check["name"]: check["intact"] for check in manifest["evidence"]}["disposal-1-1.jpg"] is True

    loop = json.loads(files["case.json"])["loop"]
    assert (loop["case_number"], loop["unit"], loop["unit_name"]) == (
        walked.case_number, "traffic-police", "章丘交警大队双山中队")
    assert loop["deadline"] == utc(START + timedelta(hours=2)) and loop["closed_at"] == utc(START + timedelta(hours=3))
    assert (loop["was_overdue"], loop["recheck_failed"], loop["close_s"]) == (True, True, 3 * 3600.0)
    assert [(photo["name"], photo["sha256"]) for photo in loop["photos"]] == [
        ("disposal-1-1.jpg", hashlib.sha256(FIELD_PHOTO).hexdigest())]
    [recheck] = loop["rechecks"]
    assert (recheck["name"], recheck["still_present"], recheck["confidence"], recheck["flagged"]) == (
        "recheck-1.jpg", True, 0.87, True)
    assert [(step["action"], step["display_name"], step["badge_number"], step["late_s"]) for step in loop["steps"]] == [
        ("file", "王小明", "ZQ-1024", None), ("dispatch", "张强", "ZQ-0001", None),
        ("dispose", "王小明", "ZQ-1024", 1800.0), ("camera_recheck", None, None, None),
        ("verify", "张强", "ZQ-0001", None), ("close", "张强", "ZQ-0001", None)]


def test_a_tampered_field_photo_is_marked_in_the_bundle_and_the_dossier_not_hashed_anew(walked):
    recorded = hashlib.sha256(FIELD_PHOTO).hexdigest()
    replaced = _tamper(walked, "disposal-1-1.jpg")
    actual = hashlib.sha256(replaced).hexdigest()

    files = _bundle(walked)
    assert files["evidence/disposal-1-1.jpg"] == replaced  # carried as it is now
    sums = _sums(files)
    assert sums["evidence/disposal-1-1.jpg"] == recorded != actual  # listed by its recorded sha256: sha256sum -c fails
    assert sums["evidence/recheck-1.jpg"] == hashlib.sha256(AFTER_PHOTO).hexdigest()
    tampered = files["TAMPERED.txt"].decode()
    assert f"evidence/disposal-1-1.jpg: recorded sha256 {recorded}, its bytes here {actual}" in tampered
    assert "recheck-1.jpg" not in tampered
    checks = {check["name"]: check for check in json.loads(files["manifest.json"])["evidence"]}
    assert (checks["disposal-1-1.jpg"]["intact"], checks["disposal-1-1.jpg"]["sha256"]) == (False, actual)
    assert json.loads(files["case.json"])["loop"]["photos"][0]["sha256"] == recorded

    text, _ = _dossier(walked)
    assert f"disposal-1-1.jpg{recorded}不符" in text and actual not in text
    assert _words("disposal-1-1.jpg（校验失败：与案件记录的 sha256 不符）") in text


def test_a_missing_after_photo_is_named_in_the_bundle_and_the_dossier(walked):
    key = walked.api.client.app.state.review.store.cases.get(walked.case_id).files()["recheck-1.jpg"].key
    (walked.var / "evidence" / key).unlink()
    files = _bundle(walked)
    assert "evidence/recheck-1.jpg" not in files
    assert _sums(files)["evidence/recheck-1.jpg"] == hashlib.sha256(AFTER_PHOTO).hexdigest()
    assert "evidence/recheck-1.jpg: recorded sha256" in files["TAMPERED.txt"].decode()
    text, _ = _dossier(walked)
    assert f"recheck-1.jpg{hashlib.sha256(AFTER_PHOTO).hexdigest()}文件缺失" in text


def test_an_overdue_case_re_dispatched_says_so_and_a_case_before_filing_has_no_section(tmp_path, monkeypatch):
    clock = FrozenClock(monkeypatch, START)
    with loop_api(tmp_path / "var") as api:
        late, confirmed = case_ids(api)[:2]
        api.confirm(late)
        api.file(late)
        api.dispatch(late)
        clock.advance(hours=3)
        api.dispatch(late, unit="shuangshan-squad")  # 超期改派, an hour past the deadline
        api.confirm(confirmed)
        walked = Walked(api, tmp_path / "var", late, "")
        text, _ = _dossier(walked)
        assert _words("章丘交警大队双山中队超期 1 小时（期限 2026-12-07 11:00:00），2026-12-07 12:00:00 超期改派") in text
        assert "原责任单位章丘交警大队双山中队超期" in text and "改派至双山街道综合执法中队" in text
        assert "尚未结案" in text
        loop = json.loads(_bundle(walked)["case.json"])["loop"]
        assert loop["was_overdue"] is True and loop["close_s"] is None
        assert [step["late_s"] for step in loop["steps"]] == [None, None, 3600.0]

        text, _ = _dossier(Walked(api, tmp_path / "var", confirmed, ""))
        assert "处置经过" not in text and "三、证据照片" in text
        assert json.loads(_bundle(Walked(api, tmp_path / "var", confirmed, ""))["case.json"])["loop"] is None
