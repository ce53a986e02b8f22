"""The officers' page in headless Chromium (Debian's chromium + chromedriver, driven by selenium).

An officer logs in, opens the list, opens a case with the keyboard, rejects it with the keyboard
(r, a reason digit, Enter) and sees the state and the audit entry change. The run leaves a
screenshot of the case page at var/screenshots/review-page.png (and of the list beside it), and
measures how many cases a reviewer can decide per minute with the keyboard flow.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from browser_support import (
    SCREENSHOTS,
    case_page_ready,
    chromium,
    full_page_screenshot,
    log_in,
    press,
    wait_for_intake,
)
from review_support import FAULT_CASE, STREAMS, queued_case_count
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.queue import SqliteCaseQueue
from pipeline.review.server import start_review_server
from pipeline.review.store import ReviewStore

pytestmark = pytest.mark.servers  # headless Chromium against the review server on a port


TRIAGE_CASES = 24  # decided back to back for the per-minute figure


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def review_server(street_var):
    server = start_review_server(street_var, port=0, streams_dir=STREAMS)
    wait_for_intake(street_var)
    try:
        yield server, street_var
    finally:
        server.stop()


def test_officer_rejects_a_case_with_the_keyboard(browser, review_server):
    server, var = review_server
    assert server.url in server.line() and f"{server.user} / {server.password}" in server.line()  # what the demo prints
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(browser, server.url, server.user, server.password)

    cards = browser.find_elements(By.CSS_SELECTOR, "#case-cards .card")
    assert len(cards) == queued_case_count(var)  # the list opens on 待审核: every case is new
    assert "待审核" in browser.find_element(By.ID, "case-cards").text
    assert {"机动车乱停放", "故障报警"} <= {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".violation")}
    assert cards[0].get_attribute("data-case-id") == FAULT_CASE  # newest first
    browser.save_screenshot(str(SCREENSHOTS / "review-list.png"))

    press(browser, "j")  # the second card: the newest vehicle case
    selected = browser.find_element(By.CSS_SELECTOR, "#case-cards .card.selected")
    case_id = selected.get_attribute("data-case-id")
    assert selected == browser.find_elements(By.CSS_SELECTOR, "#case-cards .card")[1]
    press(browser, "\ue007")  # Enter
    assert case_page_ready(browser, case_id) == case_id
    page = browser.find_element(By.TAG_NAME, "main").text
    for label in ("标注快照", "原始画面", "首次发现", "视频片段", "网格编码", "370181001001999", "36.700100"):
        assert label in page, label
    assert browser.find_element(By.ID, "case-status").text == "待审核"
    assert browser.find_element(By.ID, "clip").get_attribute("src").endswith(f"/api/cases/{case_id}/evidence/clip.mp4")
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []  # no script error, no resource refused by the content security policy
    screenshot = SCREENSHOTS / "review-page.png"
    full_page_screenshot(browser, screenshot)
    print(f"\nreview page screenshot: {screenshot}")

    press(browser, "r")
    picker = browser.find_element(By.ID, "reject-picker")
    assert picker.is_displayed()
    press(browser, "2")  # 误检
    assert browser.find_element(By.CSS_SELECTOR, "#reject-picker input[value=detector_error]").is_selected()
    press(browser, "\ue007")
    banner = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "done-banner")))
    assert f"案件 {case_id} 已驳回" in banner.text  # and the next case is open, for the next decision
    assert browser.find_element(By.ID, "case").get_attribute("data-case-id") != case_id

    browser.find_element(By.ID, "done-link").click()
    case_page_ready(browser, case_id)
    assert browser.find_element(By.ID, "case-status").text == "已驳回"
    assert "误检" in browser.find_element(By.ID, "decision").text
    newest = browser.find_element(By.CSS_SELECTOR, "#audit tbody tr:not(.view)")
    cells = [cell.text for cell in newest.find_elements(By.TAG_NAME, "td")]
    assert newest.get_attribute("data-action") == "reject"
    assert cells[2:6] == [server.user, "驳回", "待审核 → 已驳回", "误检"]
    assert browser.find_elements(By.ID, "btn-reopen")  # the demo account is a supervisor

    store = ReviewStore(var / "review" / "review.sqlite3")
    try:
        case = store.cases.get(case_id)
        views = {entry.detail["name"] for entry in store.audit.entries(case_id) if entry.action == "evidence_view"}
    finally:
        store.close()
    assert case.status.value == "rejected" and case.decided_by == server.user
    assert {"annotated.jpg", "frame.jpg", "first_seen.jpg", "crop.jpg"} <= views  # what the officer saw


def test_keyboard_triage_rate(browser, street_var, capsys):
    """Decides TRIAGE_CASES cases back to back (c, or r 2 Enter every third) and reports the rate.

    The rate is what the page allows: each case's page and main picture load before its key is
    pressed. An officer also spends the time it takes to look; the page must not be the limit.
    """
    _queue_copies_of_a_case(street_var, TRIAGE_CASES)
    server = start_review_server(street_var, port=0, streams_dir=STREAMS)
    try:
        wait_for_intake(street_var)
        log_in(browser, server.url, server.user, server.password)
        press(browser, "\ue007")
        current = case_page_ready(browser)
        started = time.perf_counter()
        for decided in range(TRIAGE_CASES):
            if decided % 3 == 2:
                press(browser, "r", "2", "\ue007")
            else:
                press(browser, "c")
            WebDriverWait(browser, 15).until(lambda d, was=current: d.execute_script(
                "const done = document.getElementById('done-link'); return done && done.textContent === arguments[0];",
                was))
            current = case_page_ready(browser)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    store = ReviewStore(street_var / "review" / "review.sqlite3")
    try:
        decided_by_demo = [entry for entry in store.audit.entries()
                           if entry.actor == server.user and entry.action in ("confirm", "reject")]
    finally:
        store.close()
    assert len(decided_by_demo) == TRIAGE_CASES
    per_minute = TRIAGE_CASES / elapsed * 60
    (SCREENSHOTS / "review-triage-rate.txt").write_text(
        f"{TRIAGE_CASES} keyboard decisions in {elapsed:.1f} s: {per_minute:.0f} per minute "
        f"(page + main picture loaded before each key; headless Chromium, {datetime.now():%Y-%m-%d %H:%M})\n")
    with capsys.disabled():
        print(f"\nkeyboard triage: {TRIAGE_CASES} decisions in {elapsed:.1f} s = {per_minute:.0f} per minute")
    assert per_minute > 30  # under 2 s of page time per case


def _queue_copies_of_a_case(var: Path, copies: int) -> None:
    """Copies of a real vehicle case under new ids and times, so there are enough to decide in a row."""
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    try:
        replayed = [json.loads(line)["case_id"] for line in (var / "cases.jsonl").read_text().splitlines()]
        original = next(record for record in map(queue.get, replayed) if record.violation == "illegal_parking")
        start = datetime.fromisoformat(original.confirmed_wall)
        for index in range(copies):
            moment = (start - timedelta(minutes=index + 1)).isoformat(timespec="milliseconds")
            assert queue.publish(replace(original, case_id=f"{original.case_id}-{index:02d}", confirmed_wall=moment))
    finally:
        queue.close()

