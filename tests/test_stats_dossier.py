"""Statistics for 考评 (JSON, CSV, XLSX, page), the printable dossier (案卷) and evidence by byte range.

One street, decided once for the module on a fake clock, so every figure below is known by hand:
the four patrol cases are decided 60 s, 120 s, 300 s and 600 s after they reached the service, and
the camera-fault case stays 待审核. Of the two confirmed, the first goes round the whole 处置流程
(dispatched at 900 s, closed at 1200 s), the second is dispatched at 1500 s and left overdue.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from review_support import FAULT_CASE, copy_of_street, login, running_app

from pipeline.evidence import LocalEvidenceStore, open_evidence_store
from pipeline.review import cases as case_store
from pipeline.review import workflow
from pipeline.review.byte_range import ByteRange, RangeNotSatisfiable, requested_range
from pipeline.review.dossier import find_dossier_font
from pipeline.review.routers import evidence as evidence_routes
from pipeline.review.vocabulary import clip_coverage, violation_label

RECEIVED = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # the fake clock when the intake takes the cases
# (decider, decision, body, seconds after reaching the service), to the patrol cases oldest first
DECISIONS = [("officer1", "confirm", {}, 60), ("officer1", "reject", {"reason": "detector_error"}, 120),
             ("officer2", "confirm", {}, 300), ("chief", "reject", {"reason": "not_a_violation"}, 600)]
# (account, step, request, seconds after reaching the service) for the first and third patrol cases
CLOSED_LOOP = [("officer1", "file", {"json": {}}, 700),
               ("chief", "dispatch", {"json": {"unit": "traffic-police"}}, 900), ("officer1", "dispose", "photo", 1000),
               ("chief", "verify", {"json": {"accept": True}}, 1100), ("chief", "close", {"json": {}}, 1200)]
LEFT_OVERDUE = [("officer2", "file", {"json": {}}, 700), ("chief", "dispatch", {"json": {"unit": "sanitation"}}, 1500)]
OFFICER1_NAME, OFFICER1_BADGE = "王小明", "ZQ-1024"


def _at(seconds: float) -> str:
    return (RECEIVED + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    """(client, patrol case ids oldest first) over a street whose cases were decided as DECISIONS says."""
    var = copy_of_street(tmp_path_factory, tmp_path_factory.mktemp("stats") / "var")
    with pytest.MonkeyPatch.context() as patch:
        clock = [_at(0)]
        patch.setattr(case_store, "now_iso", lambda: clock[0])
        patch.setattr(workflow, "clock", lambda: datetime.fromisoformat(clock[0]).timestamp())
        with running_app(var) as client:
            store = client.app.state.review.store
            store.accounts.set_profile("officer1", OFFICER1_NAME, OFFICER1_BADGE, actor="test-setup")
            patrol_cases = sorted((case for case in (store.cases.get(case_id) for case_id in store.cases.all_case_ids())
                                   if case.case_id != FAULT_CASE), key=lambda case: case.record.confirmed_wall)
            assert len(patrol_cases) == len(DECISIONS), [case.case_id for case in patrol_cases]
            for case, (name, decision, body, seconds) in zip(patrol_cases, DECISIONS, strict=True):
                clock[0] = _at(seconds)
                answer = client.post(f"/api/cases/{case.case_id}/{decision}", headers=login(client, name), json=body)
                assert answer.status_code == 200, answer.text
            photo = (var / "evidence" / patrol_cases[0].record.evidence["crop.jpg"].key).read_bytes()
            for case, steps in ((patrol_cases[0], CLOSED_LOOP), (patrol_cases[2], LEFT_OVERDUE)):
                for name, step, request, seconds in steps:
                    clock[0] = _at(seconds)
                    if request == "photo":
                        request = {"files": [("photos", ("site.jpg", photo, "image/jpeg"))]}
                    answer = client.post(f"/api/cases/{case.case_id}/{step}", headers=login(client, name), **request)
                    assert answer.status_code == 200, answer.text
            patch.undo()  # the overdue case's deadline, on 2026-03-02, has passed by now
            yield client, [case.case_id for case in patrol_cases]


def _stats(client, name: str, **params) -> dict:
    answer = client.get("/api/stats", headers=login(client, name), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _figures(row: dict) -> tuple:
    return (row["filed"], row["pending"], row["confirmed"], row["rejected"], row["false_detections"],
            row["escalated"], row["duplicate"])


# -- statistics -----------------------------------------------------------------------------------


def test_a_supervisor_sees_every_case_grouped_with_rates_and_the_median_decision_time(decided):
    client, case_ids = decided
    stats = _stats(client, "chief")
    total = stats["total"]
    # 5 filed: 2 confirmed, 2 rejected (1 误检), the fault case pending; 4 decided.
    assert _figures(total) == (5, 1, 2, 2, 1, 0, 0)
    assert total["confirmation_rate"] == 0.5 and total["false_detection_rate"] == 0.25
    assert total["median_decision_s"] == 210.0  # median of 60, 120, 300, 600
    assert (total["dispatched"], total["closed"], total["overdue"]) == (2, 1, 1)
    assert total["median_dispatch_s"] == 1200.0 and total["median_close_s"] == 1200.0  # of 900, 1500 and of 1200
    assert stats["officer"] is None and stats["since"] is None
    officers = {row["key"]: row for row in stats["by_officer"]}
    assert set(officers) == {"officer1", "officer2", "chief"}  # the pending case has no officer
    assert _figures(officers["officer1"]) == (2, 0, 1, 1, 1, 0, 0) and officers["officer1"]["label"] == OFFICER1_NAME
    assert officers["officer1"]["confirmation_rate"] == 0.5 and officers["officer1"]["median_decision_s"] == 90.0
    assert officers["officer2"]["confirmation_rate"] == 1.0 and officers["chief"]["false_detection_rate"] == 0.0
    assert [(officers[name]["dispatched"], officers[name]["closed"], officers[name]["overdue"])
            for name in ("officer1", "officer2", "chief")] == [(1, 1, 0), (1, 0, 1), (0, 0, 0)]
    assert officers["officer2"]["median_dispatch_s"] == 1500.0 and officers["officer2"]["median_close_s"] is None
    assert [(row["key"], row["filed"]) for row in stats["by_day"]] == [("2026-03-02", 5)]
    store = client.app.state.review.store
    records = [store.cases.get(case_id).record for case_id in [*case_ids, FAULT_CASE]]
    for grouping, key_of in (("by_violation", lambda record: record.violation),
                             ("by_camera", lambda record: record.camera_id),
                             ("by_grid", lambda record: record.location.get("grid_code") or "")):
        expected = {}
        for record in records:
            expected[key_of(record)] = expected.get(key_of(record), 0) + 1
        assert {row["key"]: row["filed"] for row in stats[grouping]} == expected, grouping
    labels = {row["key"]: row["label"] for row in stats["by_violation"]}
    assert all(labels[record.violation] == violation_label(record.violation) for record in records)


def test_an_officer_sees_only_their_own_decisions_and_an_admin_none(decided):
    client, _ = decided
    mine = _stats(client, "officer1")
    assert mine["officer"] == "officer1"
    assert _figures(mine["total"]) == (2, 0, 1, 1, 1, 0, 0) and mine["total"]["median_decision_s"] == 90.0
    assert [row["key"] for row in mine["by_officer"]] == ["officer1"]
    assert client.get("/api/stats", headers=login(client, "root")).status_code == 403
    assert client.get("/api/stats.csv", headers=login(client, "root")).status_code == 403
    assert client.get("/api/stats").status_code == 401


def test_the_period_selects_cases_by_their_confirmed_time(decided):
    client, case_ids = decided
    store = client.app.state.review.store
    assert _stats(client, "chief", since="2026-03-02", until="2026-03-03")["total"]["filed"] == 5
    assert _stats(client, "chief", until="2026-03-02")["total"]["filed"] == 0
    assert _stats(client, "chief", since="2026-03-03")["by_day"] == []
    # From the third patrol case on (display time zone, no offset): it, the fourth, and the fault case if later.
    third = datetime.fromisoformat(store.cases.get(case_ids[2]).record.confirmed_wall)
    fault = datetime.fromisoformat(store.cases.get(FAULT_CASE).record.confirmed_wall)
    since = third.replace(tzinfo=None).isoformat()
    later = _stats(client, "chief", since=since)
    assert later["total"]["filed"] == 2 + (fault >= third)
    assert {row["key"] for row in later["by_officer"]} == {"officer2", "chief"}
    assert later["since"] == third.isoformat()
    refused = client.get("/api/stats", headers=login(client, "chief"), params={"since": "1700000000"})
    assert refused.status_code == 422


def test_csv_and_xlsx_hold_the_same_figures(decided):
    client, _ = decided
    chief = login(client, "chief")
    answer = client.get("/api/stats.csv", headers=chief)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())  # Excel reads the Chinese as UTF-8 only with it
    assert "stats-all-all.csv" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    total = next(row for row in rows if row["分组"] == "合计")
    assert (total["案件数"], total["已确认"], total["其中误检"], total["确认率"], total["误检率"]) == (
        "5", "2", "1", "0.5", "0.25")
    assert (total["已派遣"], total["已结案"], total["超期"]) == ("2", "1", "1")
    assert (total["审核用时中位数（秒）"], total["派遣用时中位数（秒）"], total["结案用时中位数（秒）"]) == (
        "210.0", "1200.0", "1200.0")
    officer1 = next(row for row in rows if row["分组"] == "按执法队员" and row["键"] == "officer1")
    assert (officer1["名称"], officer1["案件数"], officer1["审核用时中位数（秒）"]) == (OFFICER1_NAME, "2", "90.0")
    assert {row["分组"] for row in rows} == {"合计", "按日", "按违规类型", "按摄像头", "按网格", "按执法队员"}

    workbook = client.get("/api/stats.xlsx", headers=chief, params={"since": "2026-03-02"})
    assert workbook.status_code == 200 and "stats-2026-03-02-all.xlsx" in workbook.headers["content-disposition"]
    book = load_workbook(io.BytesIO(workbook.content), read_only=True)
    assert book.sheetnames == ["说明", "合计", "按日", "按违规类型", "按摄像头", "按网格", "按执法队员"]
    about = {row[0]: row[1] for row in book["说明"].iter_rows(values_only=True)}
    assert about["统计期间"].startswith("2026-03-02 00:00:00 至") and about["统计范围"] == "全部案件"
    header, *sums = book["合计"].iter_rows(values_only=True)
    summed = dict(zip(header, sums[0], strict=True))
    assert (summed["案件数"], summed["已驳回"], summed["确认率"], summed["审核用时中位数（秒）"]) == (5, 2, 0.5, 210.0)
    assert (summed["超期"], summed["结案用时中位数（秒）"]) == (1, 1200.0)
    header, *officers = book["按执法队员"].iter_rows(values_only=True)
    assert {row[1]: row[header.index("案件数")] for row in officers} == {"officer1": 2, "officer2": 1, "chief": 1}


def test_the_stats_page_charts_the_figures_in_chinese_with_a_date_filter(decided):
    client, _ = decided
    chief = login(client, "chief")
    page = client.get("/stats", headers=chief, params={"since": "2026-03-02T00:00"})
    assert page.status_code == 200
    text = page.text
    assert "统计考评" in text and 'name="since" value="2026-03-02T00:00"' in text and "全部案件" in text
    assert '<svg class="chart" id="by-officer-chart"' in text and 'class="bar-confirmed"' in text
    assert 'href="/api/stats.xlsx?since=2026-03-02T00%3A00"' in text
    assert '<strong id="confirmation-rate">50.0%</strong>' in text and "3.5 分钟" in text  # 210 s
    assert '<strong id="overdue">1</strong>' in text and "20.0 分钟" in text  # 1200 s to dispatch, to close
    assert 'href="/stats"' in client.get("/", headers=chief).text  # in the nav
    own = client.get("/stats", headers=login(client, "officer2")).text
    assert "本人处理的案件" in own and OFFICER1_NAME not in own


# -- dossier --------------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_dossier_is_one_pdf_with_photos_facts_officer_audit_and_every_sha256(decided):
    if find_dossier_font() is None:
        pytest.fail("the dossier needs a CJK font: apt-get install fonts-wqy-microhei "
                    "(tests/servers/install-packages.sh)", pytrace=False)
    client, case_ids = decided
    case_id = case_ids[0]  # confirmed by officer1
    record = client.app.state.review.store.cases.get(case_id).record
    answer = client.get(f"/api/cases/{case_id}/dossier.pdf", headers=login(client, "chief"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf" and answer.content.startswith(b"%PDF")
    assert f"{case_id}-dossier.pdf" in answer.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(answer.content))
    assert sum(len(page.images) for page in reader.pages) == len(
        {"annotated.jpg", "first_seen.jpg", "crop.jpg", "plate.jpg"} & set(record.evidence))
    text = _pdf_text(answer.content)
    for expected in (case_id, violation_label(record.violation), record.event_code, record.location["grid_code"],
                     f"{OFFICER1_NAME}（执法证号 {OFFICER1_BADGE}）", "导出案卷", "确认"):
        assert expected in text, expected
    if record.plate:
        assert record.plate["text"] in text
    for name, item in record.evidence.items():
        assert item.sha256 in text, name
    entry = client.app.state.review.store.audit.entries(case_id)[-1]
    assert (entry.action, entry.actor) == ("dossier_export", "chief") and entry.sha256[:16] in text


def test_the_dossier_carries_the_signed_head_of_the_audit_chain_at_its_export(decided):
    """电子签章: the head a third party checks with `patrol verify --expect-head` and the service's public key."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from pipeline.review.signed_heads import SignedHead

    client, case_ids = decided
    review = client.app.state.review
    answer = client.get(f"/api/cases/{case_ids[0]}/dossier.pdf", headers=login(client, "chief"))
    assert answer.status_code == 200, answer.text
    text = _pdf_text(answer.content)
    unbroken = "".join(text.split())  # the signature may wrap in its cell
    head = review.store.audit.entries()[-1]  # the dossier's own export entry is the chain's head
    assert head.action == "dossier_export" and "电子签章" in text
    assert f"--expect-head{head.seq}:{head.sha256}" in unbroken
    signed = review.signer.head(head)
    assert "Ed25519签名" in unbroken and signed.signature in unbroken
    key = load_pem_public_key(review.signer.public_key_pem.encode())
    assert SignedHead(head.seq, head.sha256, head.at, signed.signature).signed_by(key)


def test_without_a_cjk_font_the_dossier_is_refused_in_chinese_naming_the_package(decided, monkeypatch):
    client, case_ids = decided
    monkeypatch.setattr(evidence_routes, "find_dossier_font", lambda: None)
    entries = len(client.app.state.review.store.audit.entries(case_ids[1]))
    answer = client.get(f"/api/cases/{case_ids[1]}/dossier.pdf", headers=login(client, "officer1"))
    assert answer.status_code == 503
    assert "中文字体" in answer.json()["detail"] and "fonts-wqy-microhei" in answer.json()["detail"]
    assert len(client.app.state.review.store.audit.entries(case_ids[1])) == entries  # nothing was exported


def test_the_case_page_links_the_dossier_says_what_the_clip_covers_and_prints_clean(decided):
    client, case_ids = decided
    page = client.get(f"/cases/{case_ids[0]}", headers=login(client, "officer1")).text
    assert f'href="/api/cases/{case_ids[0]}/dossier.pdf"' in page
    assert "确认前 8 秒至确认后 4 秒" in page and "首次发现至确认）" not in page
    sheet = client.get("/static/review.css").text
    printed = sheet[sheet.index("@media print"):]
    assert all(selector in printed for selector in (".topbar", ".actions", "button", "video"))


def test_the_clip_caption_names_the_first_sighting_only_when_the_clip_holds_it():
    confirmed = "2026-03-02T08:00:30+08:00"
    assert clip_coverage("2026-03-02T08:00:25+08:00", confirmed) == "确认前 8 秒至确认后 4 秒，含首次发现"
    assert clip_coverage("2026-03-02T08:00:10+08:00", confirmed) == (
        "确认前 8 秒至确认后 4 秒；首次发现在确认前 20 秒，不在片段内")


# -- evidence by byte range -------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-99", 1000, ByteRange(0, 99, 1000)),
    ("bytes=990-2000", 1000, ByteRange(990, 999, 1000)),  # cut to the end
    ("bytes=500-", 1000, ByteRange(500, 999, 1000)),
    ("bytes=-100", 1000, ByteRange(900, 999, 1000)),
    ("bytes=-5000", 1000, ByteRange(0, 999, 1000)),
    ("bytes=5-2", 1000, None),  # malformed: the whole file
    ("bytes=0-1,5-9", 1000, None),  # several ranges: the whole file
    ("items=0-1", 1000, None),
    ("bytes=-", 1000, None),
])
def test_a_range_header_is_read_as_rfc_9110_says(header, size, expected):
    assert requested_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)])
def test_a_range_outside_the_file_is_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        requested_range(header, size)


def test_a_clip_is_served_whole_or_by_range_and_each_part_is_audited(decided):
    client, case_ids = decided
    officer = login(client, "officer1")
    case_id = next(case_id for case_id in case_ids
                   if "clip.mp4" in client.app.state.review.store.cases.get(case_id).record.evidence)
    url = f"/api/cases/{case_id}/evidence/clip.mp4"
    whole = client.get(url, headers=officer)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    data, size = whole.content, len(whole.content)
    part = client.get(url, headers={**officer, "Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.content == data[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{size}" and part.headers["content-length"] == "1024"
    assert part.headers["content-type"] == "video/mp4" and part.headers["accept-ranges"] == "bytes"
    tail = client.get(url, headers={**officer, "Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    past = client.get(url, headers={**officer, "Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert client.get(url, headers={**officer, "Range": "bytes=9-3"}).content == data  # unreadable: whole
    views = [entry.detail for entry in client.app.state.review.store.audit.entries(case_id)
             if entry.action == "evidence_view" and entry.actor == "officer1"]
    assert views[-4:-1] == [  # the 416 read nothing, so it is no look
        {"name": "clip.mp4", "key": views[-1]["key"], "recorded_sha256": views[-1]["recorded_sha256"],
         "intact": True},
        {"name": "clip.mp4", "key": views[-1]["key"], "recorded_sha256": views[-1]["recorded_sha256"],
         "range": f"bytes 100-1123/{size}"},
        {"name": "clip.mp4", "key": views[-1]["key"], "recorded_sha256": views[-1]["recorded_sha256"],
         "range": f"bytes {size - 16}-{size - 1}/{size}"},
    ]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.servers)])
def evidence_store(request, tmp_path):
    if request.param == "local":
        return LocalEvidenceStore(tmp_path / "evidence")
    return open_evidence_store(None, request.getfixturevalue("s3_env"))


def test_every_store_reads_a_byte_range_and_a_size(evidence_store):
    data = bytes(range(256)) * 40
    item = evidence_store.put("2026-03-02/cam/case/clip.mp4", data, "video/mp4")
    assert evidence_store.exists(item.key) and evidence_store.sha256_of(item.key) == item.sha256
    assert evidence_store.size_of("2026-03-02/cam/case/clip.mp4") == len(data)
    assert evidence_store.get_range("2026-03-02/cam/case/clip.mp4", 1000, 24) == data[1000:1024]
    assert evidence_store.get_range("2026-03-02/cam/case/clip.mp4", len(data) - 5, 100) == data[-5:]
    assert hashlib.sha256(evidence_store.get("2026-03-02/cam/case/clip.mp4")).hexdigest() == (
        hashlib.sha256(data).hexdigest())
    assert not evidence_store.exists("2026-03-02/cam/case/none.mp4")
    for missing in (lambda: evidence_store.size_of("2026-03-02/cam/case/none.mp4"),
                    lambda: evidence_store.get_range("2026-03-02/cam/case/none.mp4", 0, 10),
                    lambda: evidence_store.sha256_of("2026-03-02/cam/case/none.mp4"),
                    lambda: evidence_store.url_for("2026-03-02/cam/case/none.mp4")):
        with pytest.raises(KeyError):
            missing()
