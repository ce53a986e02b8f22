"""Issue 15 item 6: the plate, large and in its colour, corrected by an officer with the machine's read
kept; several cases confirmed or rejected at once from the list; a duplicate chosen from suggested cases.

On the replayed street plus copies of its first parked car under new ids, times, zones and plates
(the sample's synthetic cars carry no legible plate, so the copies stand in for what the OCR reads).
Every change is checked in the audit chain, which ``verify`` still finds whole; the page test drives
headless Chromium and leaves screenshots in var/screenshots/shift/ (plate-*.png).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import zipfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from browser_support import (
    SCREENSHOTS,
    VIEWPORTS,
    case_page_ready,
    chromium,
    log_in,
    press,
    viewport,
    wait_for_intake,
)
from pypdf import PdfReader
from review_support import PASSWORD, STREAMS, add_accounts, login, running_app
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.queue import SqliteCaseQueue
from pipeline.review.dossier import find_dossier_font
from pipeline.review.plates import PLATE_FORMAT_HINT
from pipeline.review.server import start_review_server
from pipeline.review.signed_heads import anchor_paths
from pipeline.review.verify import verify

# Copies of the street's first parked car: (case id, hours after it, zone (None: its own), plate as read).
A, B, C, D, E = "P-a0000000000000a1", "P-b0000000000000b2", "P-c0000000000000c3", "P-d0000000000000d4", \
    "P-e0000000000000e5"


def read(text: str, colour: str = "blue", confidence: float = 0.91) -> dict:
    return {"text": text, "confidence": confidence, "colour": colour, "frame": "best", "pts_s": 12.0}


COPIES = (
    (A, 1.0, None, read("鲁A12345")),
    (B, 2.0, "sidewalk-north", read("鲁A12345", confidence=0.88)),  # the same car, parked further on
    (C, 1.5, None, read("鲁B99999", "yellow", 0.8)),  # another car at the same kerb
    (D, 10.0, None, read("鲁AD12345", "green", 0.95)),  # a new-energy car, hours later
    (E, 4.0, None, read("鲁A12345", confidence=0.93)),  # the same car at the same kerb again
)


def add_plate_cases(var: Path) -> tuple[str, str]:
    """The copies, queued under ``var``; the street's own two parked cars (no plate read), oldest first."""
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    try:
        replayed = [json.loads(line)["case_id"] for line in (var / "cases.jsonl").read_text().splitlines()]
        parked = sorted((record for record in map(queue.get, replayed) if record.violation == "illegal_parking"),
                        key=lambda record: record.confirmed_wall)
        first = parked[0]
        for case_id, hours, zone, plate in COPIES:
            def later(wall: str) -> str:
                return (datetime.fromisoformat(wall) + timedelta(hours=hours)).isoformat(timespec="milliseconds")
            assert queue.publish(replace(first, case_id=case_id, zone_id=zone or first.zone_id, plate=plate,
                                         confirmed_wall=later(first.confirmed_wall),
                                         first_seen_wall=later(first.first_seen_wall)))
    finally:
        queue.close()
    return parked[0].case_id, parked[1].case_id


@pytest.fixture
def plated(street_var):
    """The service over the street and its copies: (client, the street's own parked cars, oldest first)."""
    own = add_plate_cases(street_var)
    with running_app(street_var) as client:
        yield client, own


def case_of(client, headers, case_id: str) -> dict:
    answer = client.get(f"/api/cases/{case_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def entries(client, case_id: str, action: str) -> list:
    return [entry for entry in client.app.state.review.store.audit.entries(case_id) if entry.action == action]


def verify_problems(client) -> list[str]:
    review = client.app.state.review
    key, heads = anchor_paths(review.settings.db_path, review.settings.audit_key, review.settings.signed_heads)
    return verify(review.store, review.evidence, key_path=key, heads_path=heads).problems


# -- the plate ----------------------------------------------------------------------------------


def test_an_officer_corrects_a_plate_the_read_is_kept_and_the_correction_is_audited_and_verifies(plated):
    client, _ = plated
    officer, chief = login(client, "officer1"), login(client, "chief")
    before = case_of(client, officer, A)
    assert before["current_plate"] == {
        "text": "鲁A12345", "display": "鲁A·12345", "colour": "blue", "colour_label": "蓝牌", "corrected": False,
        "read": {"text": "鲁A12345", "confidence": 0.91, "colour": "blue", "colour_label": "蓝牌"},
        "correction": None}
    assert before["plate_correctable"]

    answer = client.post(f"/api/cases/{A}/plate", headers=officer,
                         json={"text": " 鲁a·12346 ", "reason": "识别将 6 误读为 5"})
    assert answer.status_code == 200, answer.text
    corrected = answer.json()
    plate = corrected["current_plate"]
    assert (plate["text"], plate["display"], plate["colour"], plate["corrected"]) == ("鲁A12346", "鲁A·12346", "blue",
                                                                                      True)
    assert plate["read"]["text"] == "鲁A12345" and plate["read"]["confidence"] == 0.91  # the machine's read, kept
    assert plate["correction"]["by"] == "officer1" and plate["correction"]["reason"] == "识别将 6 误读为 5"
    # The record as filed (and sealed) is untouched; a correction is no decision, so the version stays.
    assert corrected["plate"] == before["plate"] and corrected["record_sha256"] == before["record_sha256"]
    assert corrected["version"] == before["version"] and corrected["status"] == "new"

    [entry] = entries(client, A, "plate_correct")
    assert entry.actor == "officer1" and entry.seq == plate["correction"]["audit_seq"]
    assert entry.before == {"plate": "鲁A12345", "plate_colour": "blue"}
    assert entry.after == {"plate": "鲁A12346", "plate_colour": "blue"}
    assert entry.detail["read"] == {"text": "鲁A12345", "confidence": 0.91, "colour": "blue"}
    assert entry.detail["reason"] == "识别将 6 误读为 5"
    audit = client.get(f"/api/cases/{A}/audit", headers=officer).json()
    assert audit[-1]["action_label"] == "更正车牌"

    # Found by the plate it shows and by the one read; shown large on its card and its page.
    for text in ("鲁a12346", "鲁A12345"):
        listed = client.get("/api/cases", headers=officer, params={"q": text, "per_page": 100}).json()["items"]
        assert A in [item["case_id"] for item in listed], text
    cards = client.get("/", headers=officer).text
    assert '<span class="plate plate-blue" title="车牌 蓝牌">鲁A·12346</span>' in cards
    assert '<span class="plate plate-green" title="车牌 绿牌（新能源）">鲁A·D12345</span>' in cards
    page = client.get(f"/cases/{A}", headers=officer).text
    assert 'id="plate-text" title="蓝牌">鲁A·12346</span>' in page and "人工更正" in page
    assert '<span class="mono">鲁A12345</span>（蓝牌，置信度 0.91）' in page  # 识别结果

    # A supervisor says the plate is green after all: a second correction, in force over the first.
    green = client.post(f"/api/cases/{A}/plate", headers=chief, json={"text": "鲁A12346", "colour": "green"})
    assert green.status_code == 200 and green.json()["current_plate"]["colour_label"] == "绿牌（新能源）"
    assert [e.after for e in entries(client, A, "plate_correct")][-1] == {"plate": "鲁A12346", "plate_colour": "green"}
    assert client.post(f"/api/cases/{A}/confirm", headers=officer, json={"version": before["version"]}).status_code \
        == 200

    # The exports carry the plate in force and the read beside it.
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/cases/{A}/bundle", headers=officer).content))
    bundled = json.loads(archive.read(f"{A}/case.json"))
    assert bundled["plate"]["text"] == "鲁A12346" and bundled["plate"]["read"]["text"] == "鲁A12345"
    assert bundled["plate"]["correction"]["by"] == "chief" and bundled["record"]["plate"]["text"] == "鲁A12345"
    if find_dossier_font() is None:
        pytest.fail("the dossier needs a CJK font: apt-get install fonts-wqy-microhei", pytrace=False)
    dossier = client.get(f"/api/cases/{A}/dossier.pdf", headers=officer)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(dossier.content)).pages)
    assert "鲁A12346" in text and "人工更正" in text and "识别结果：鲁A12345" in text

    assert verify_problems(client) == []
    # A correction changed behind the service's back is found: it no longer matches its entry.
    with sqlite3.connect(client.app.state.review.settings.db_path) as conn:
        conn.execute("UPDATE plate_corrections SET text = '鲁A99999' WHERE case_id = ?", (A,))
    conn.close()
    problems = verify_problems(client)
    assert len(problems) == 1 and problems[0].startswith(f"case {A}: plate shows 鲁A99999"), problems


def test_a_plate_that_is_no_chinese_plate_is_refused_in_chinese_and_nothing_is_recorded(plated):
    client, (street_parked, _) = plated
    officer, officer2, root = login(client, "officer1"), login(client, "officer2"), login(client, "root")
    for text in ("ABC1234", "鲁A1234", "鲁A1234567", "鲁12345A", "A鲁12345", "鲁A 12 34?"):
        refused = client.post(f"/api/cases/{A}/plate", headers=officer, json={"text": text})
        assert refused.status_code == 400, text
        assert refused.json()["code"] == "plate_format"
        assert refused.json()["detail"] == f"车牌号码“{text.strip()}”格式不正确：应为{PLATE_FORMAT_HINT}"
        assert "省份简称＋发牌机关字母＋5 位字母或数字（新能源车 6 位）" in PLATE_FORMAT_HINT
    assert client.post(f"/api/cases/{A}/plate", headers=officer, json={"text": ""}).status_code == 422
    same = client.post(f"/api/cases/{A}/plate", headers=officer, json={"text": "鲁A·12345"})
    assert same.status_code == 400 and same.json()["detail"] == "车牌已是 鲁A·12345（蓝牌），无需更正"
    stall = next(item["case_id"] for item in client.get("/api/cases", headers=officer, params={
        "violation": "stall_encroachment"}).json()["items"])
    no_plate = client.post(f"/api/cases/{stall}/plate", headers=officer, json={"text": "鲁A12345"})
    assert no_plate.status_code == 400 and no_plate.json()["detail"] == "占道经营案件没有车牌，无需更正"
    assert not case_of(client, officer, stall)["plate_correctable"]
    assert client.post(f"/api/cases/{A}/plate", headers=root, json={"text": "鲁A12346"}).status_code == 403
    # Someone else holds the case: the officer waits.
    assert client.post(f"/api/cases/{A}/claim", headers=officer2, json={}).status_code == 200
    held = client.post(f"/api/cases/{A}/plate", headers=officer, json={"text": "鲁A12346"})
    assert held.status_code == 409 and held.json()["code"] == "case_claimed"
    assert "请等其处理或释放认领后再更正车牌" in held.json()["detail"]
    assert client.get("/api/cases/P-nope", headers=officer).status_code == 404
    assert client.post("/api/cases/P-nope/plate", headers=officer, json={"text": "鲁A12346"}).status_code == 404
    assert entries(client, A, "plate_correct") == []
    # A parked car whose plate was not read gets one added, with no read beside it.
    added = client.post(f"/api/cases/{street_parked}/plate", headers=officer, json={"text": "鲁A8K6Q5"})
    assert added.status_code == 200, added.text
    assert added.json()["current_plate"]["read"] is None and added.json()["current_plate"]["colour"] == "unknown"
    assert entries(client, street_parked, "plate_correct")[0].before == {"plate": None, "plate_colour": None}
    assert verify_problems(client) == []


# -- bulk decisions -------------------------------------------------------------------------------


def test_a_bulk_confirmation_decides_each_case_on_its_own_and_says_why_the_refused_ones_were_not(plated, street_var):
    client, _ = plated
    officer, officer2 = login(client, "officer1"), login(client, "officer2")
    stall = next(item for item in client.get("/api/cases", headers=officer, params={
        "violation": "stall_encroachment"}).json()["items"])
    record = client.app.state.review.store.cases.get(stall["case_id"]).record
    annotated = street_var / "evidence" / record.evidence["annotated.jpg"].key
    annotated.write_bytes(b"not the annotated picture")  # its evidence no longer matches its record
    assert client.post(f"/api/cases/{C}/claim", headers=officer2, json={}).status_code == 200
    version_b = case_of(client, officer, B)["version"]

    answer = client.post("/api/cases/bulk", headers=officer, json={
        "action": "confirm", "case_ids": [A, B, C, stall["case_id"], "P-nope", A], "versions": {B: version_b},
        "note": "批量确认"})
    assert answer.status_code == 200, answer.text
    bulk = answer.json()
    assert (bulk["action"], bulk["done"], bulk["refused"]) == ("confirm", 2, 3)
    results = {result["case_id"]: result for result in bulk["results"]}
    assert list(results) == [A, B, C, stall["case_id"], "P-nope"]  # in order, each once
    assert results[A]["done"] and results[A]["status"] == "confirmed" and results[A]["status_label"] == "已确认"
    assert results[C]["code"] == "case_claimed" and results[C]["status"] == "new"
    assert results[C]["detail"].startswith("该案件已由 officer2 认领（至 ")
    assert results[stall["case_id"]]["code"] == "conflict" and "证据文件 annotated.jpg" in results[stall["case_id"]][
        "detail"]
    assert results["P-nope"] == {"case_id": "P-nope", "done": False, "status": None, "status_label": None,
                                 "code": "not_found", "detail": "没有案件 P-nope"}
    assert bulk["summary"] == (f"已确认 2 件，3 件未处理：{C}：{results[C]['detail']}；{stall['case_id']}："
                               f"{results[stall['case_id']]['detail']}；P-nope：没有案件 P-nope")
    for case_id in (A, B):  # each its own decision, with its own audit entry
        [entry] = entries(client, case_id, "confirm")
        assert entry.actor == "officer1" and entry.after["status"] == "confirmed" and entry.after["note"] == "批量确认"
    assert entries(client, C, "confirm") == [] and case_of(client, officer, C)["status"] == "new"

    # A stale version, an already decided case: refused each, the others rejected.
    stale = client.post("/api/cases/bulk", headers=officer, json={
        "action": "reject", "reason": "detector_error", "case_ids": [D, E, A], "versions": {E: 1}})
    results = {result["case_id"]: result for result in stale.json()["results"]}
    assert results[D]["done"] and results[D]["status"] == "rejected"
    assert results[E]["code"] == "case_changed" and results[A]["code"] == "conflict"
    assert results[A]["detail"] == f"案件 {A} 已处理（已确认），如需更改请联系中队长重新打开"
    assert stale.json()["summary"].startswith("已驳回 1 件，2 件未处理：")
    # A rejection without its reason is refused once, before any case is touched.
    for body, why in (({}, "驳回须选择原因"), ({"reason": "other", "note": " "}, "须填写说明")):
        refused = client.post("/api/cases/bulk", headers=officer, json={"action": "reject", "case_ids": [E], **body})
        assert refused.status_code == 400 and why in refused.json()["detail"]
    assert client.post("/api/cases/bulk", headers=officer, json={"action": "escalate", "case_ids": [E]}).status_code \
        == 422
    assert client.post("/api/cases/bulk", headers=officer, json={"action": "confirm", "case_ids": []}).status_code \
        == 422
    assert client.post("/api/cases/bulk", headers=login(client, "root"), json={
        "action": "confirm", "case_ids": [E]}).status_code == 403
    assert case_of(client, officer, E)["status"] == "new"
    annotated.unlink()  # verify would name the tampered file; the chain itself is what is checked here
    assert [problem for problem in verify_problems(client) if "annotated.jpg" not in problem] == []


# -- duplicates -----------------------------------------------------------------------------------


def test_duplicate_suggestions_are_the_same_place_or_plate_within_the_window_most_likely_first(plated):
    client, (first_parked, second_parked) = plated
    officer = login(client, "officer1")

    def suggested(case_id: str, **params) -> list[str]:
        answer = client.get(f"/api/cases/{case_id}/duplicates", headers=officer, params=params)
        assert answer.status_code == 200, answer.text
        return [candidate["case"]["case_id"] for candidate in answer.json()["candidates"]]

    # Same plate at the same kerb, then the same plate elsewhere, then the same kerb without a plate
    # (nearest first), then another car at the kerb; D is 9 hours away, the stall and bin are other kinds.
    assert suggested(A) == [E, B, second_parked, first_parked, C]
    answer = client.get(f"/api/cases/{A}/duplicates", headers=officer).json()
    assert answer["window_h"] == 6.0
    top = answer["candidates"][0]
    assert top["reasons"] == ["同一摄像头与管控区", "同一车牌"] and top["same_plate"] and top["same_place"]
    assert top["minutes_apart"] == 180.0 and top["apart_label"] == "晚 3 小时"
    assert top["confirmed_label"] == "2026-03-02 12:00:29"
    assert top["case"]["current_plate"]["display"] == "鲁A·12345" and top["case"]["thumbnail_url"]
    assert answer["candidates"][1]["reasons"] == ["同一车牌"]
    assert answer["candidates"][-1]["reasons"] == ["同一摄像头与管控区", "车牌不同"]
    assert answer["candidates"][2]["apart_label"] == "早 59 分钟"
    assert suggested(A, hours=12) == [E, B, second_parked, first_parked, C, D]  # D's plate differs, 9 h later
    assert suggested(A, hours=0.6) == [C]

    # The plate as corrected is what matches: C's car turns out to be A's.
    assert client.post(f"/api/cases/{C}/plate", headers=officer, json={"text": "鲁A12345",
                                                                        "colour": "blue"}).status_code == 200
    assert suggested(A)[:2] == [C, E]
    # Chosen from the suggestions; a case marked as a duplicate is suggested no more (its original is).
    marked = client.post(f"/api/cases/{C}/duplicate", headers=officer, json={"duplicate_of": suggested(C)[0]})
    assert marked.status_code == 200 and marked.json()["decision"]["duplicate_of"] == A
    assert C not in suggested(A) and C not in suggested(E)
    assert client.get("/api/cases/P-nope/duplicates", headers=officer).status_code == 404
    assert client.get(f"/api/cases/{A}/duplicates", headers=officer, params={"hours": 0}).status_code == 422
    assert client.get(f"/api/cases/{A}/duplicates", headers=login(client, "root")).status_code == 403
    assert verify_problems(client) == []


# -- the page -------------------------------------------------------------------------------------


def font_px(driver, selector: str) -> float:
    return float(driver.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0])).fontSize;", selector).removesuffix("px"))


def first_screens(driver, name: str, phone_scrolled_to: str | None = None) -> None:
    """The screen as an officer first sees it at each VIEWPORTS size (on a phone, scrolled to
    ``phone_scrolled_to``): plate-<name>-<size>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size in VIEWPORTS:
        with viewport(driver, size):
            driver.execute_script("window.scrollTo(0, 0);")
            if phone_scrolled_to and size == "phone":
                driver.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
                                      phone_scrolled_to)
            driver.save_screenshot(str(SHOTS / f"plate-{name}-{size}.png"))


SHOTS = SCREENSHOTS / "shift"


@pytest.mark.servers
def test_the_page_shows_plates_large_corrects_one_and_marks_a_duplicate_chosen_from_the_suggestions(street_var):
    add_plate_cases(street_var)
    add_accounts(street_var / "review" / "review.sqlite3")
    server = start_review_server(street_var, port=0, streams_dir=STREAMS)
    driver = None
    try:
        wait_for_intake(street_var)
        driver = chromium((1366, 900))
        log_in(driver, server.url, "officer1", PASSWORD)

        # On the list, each plate in its colour, larger than the card's text.
        card = f'.card[data-case-id="{D}"] .card-plate .plate'
        assert driver.find_element(By.CSS_SELECTOR, card).text == "鲁A·D12345"
        assert "plate-green" in driver.find_element(By.CSS_SELECTOR, card).get_attribute("class")
        assert font_px(driver, card) >= 18 > font_px(driver, f'.card[data-case-id="{D}"] .card-body') + 4
        assert "plate-yellow" in driver.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{C}"] .plate') \
            .get_attribute("class")
        first_screens(driver, "list", "#bulk-bar")

        # C's plate, corrected on its page: L, the text, Enter; the read stays beside it.
        driver.get(f"{server.url}cases/{C}")
        case_page_ready(driver, C)
        press(driver, "l")
        field = driver.find_element(By.ID, "plate-input")
        field.clear()
        field.send_keys("鲁B99998")
        driver.find_element(By.ID, "plate-reason").send_keys("9 与 8 相近，现场核实\n")
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "plate-corrected"))
        assert driver.find_element(By.ID, "plate-text").text == "鲁B·99998"
        assert driver.find_element(By.ID, "plate-read").text == "识别结果 鲁B99999（黄牌，置信度 0.80）"
        assert driver.find_element(By.ID, "plate-corrected").text.startswith("人工更正 鲁B99998（黄牌）· officer1 · ")
        first_screens(driver, "case")

        # A's page: the plate large near the photo; 重复 offers E first (same plate, same kerb), chosen with 1.
        driver.get(f"{server.url}cases/{A}")
        case_page_ready(driver, A)
        assert driver.find_element(By.ID, "plate-text").text == "鲁A·12345" and font_px(driver, "#plate-text") >= 28
        press(driver, "d")
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#duplicate-choices li"))
        choices = [item.get_attribute("data-case-id") for item in
                   driver.find_elements(By.CSS_SELECTOR, "#duplicate-choices li")]
        assert choices[0] == E and C in choices
        first = driver.find_element(By.CSS_SELECTOR, "#duplicate-choices li").text
        assert "鲁A·12345" in first and "同一摄像头与管控区 · 同一车牌" in first and "晚 3 小时" in first
        press(driver, "1")
        assert driver.find_element(By.ID, "duplicate-of").get_attribute("value") == E
        first_screens(driver, "duplicates")
        press(driver, "\n")
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "done-banner"))
        assert driver.find_element(By.ID, "done-banner").text == f"案件 {A} 已标记重复。"

        # The bulk bar: three cards ticked (X on the highlighted first one, two clicks) and confirmed at once;
        # E, which officer2 holds meanwhile, is left to him and the summary says so.
        driver.get(server.url)
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card input.bulk-pick"))
        press(driver, "x")
        for case_id in (B, E):
            driver.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{case_id}"] input.bulk-pick').click()
        assert driver.find_element(By.ID, "bulk-count").text == "3"
        with httpx.Client(base_url=server.url, timeout=30) as api:
            token = api.post("/api/login", json={"name": "officer2", "password": PASSWORD}).json()["access_token"]
            held = api.post(f"/api/cases/{E}/claim", json={}, headers={"Authorization": f"Bearer {token}"})
            assert held.status_code == 200, held.text
        driver.find_element(By.ID, "bulk-confirm").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "bulk-result").text.startswith("已确认"))
        assert re.fullmatch(rf"已确认 2 件，1 件未处理：{E}：该案件已由 officer2 认领（至 \d\d:\d\d），请选择其他案件",
                            driver.find_element(By.ID, "bulk-result").text)
        assert driver.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{B}"] .badge').text == "已确认"
        assert "refused" in driver.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{E}"]').get_attribute("class")
        assert [box.get_attribute("value") for box in driver.find_elements(
            By.CSS_SELECTOR, "input.bulk-pick:checked")] == [E]  # still ticked, to try again
        first_screens(driver, "bulk", "#bulk-bar")
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
