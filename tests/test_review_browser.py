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
from review_support import FAULT_CASE, REPO, STREAMS, copy_of_street, queued_case_count
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.queue import SqliteCaseQueue
from pipeline.review.server import start_review_server
from pipeline.review.store import ReviewStore

pytestmark = pytest.mark.servers  # headless Chromium against the review server on a port


@pytest.fixture
def street_var(tmp_path_factory, tmp_path):
    """A private copy of the replayed street (made once per session): this test's decisions are its own."""
    return copy_of_street(tmp_path_factory, tmp_path / "var")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "var" / "screenshots"
TRIAGE_CASES = 24  # decided back to back for the per-minute figure


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the page test drives Debian's chromium and chromium-driver; `make test` installs them "
                    "(tests/servers/install-packages.sh)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1100",
                     "--lang=zh-CN", "--autoplay-policy=user-gesture-required"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see script and CSP errors
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def review_server(street_var):
    server = start_review_server(street_var, port=0, streams_dir=STREAMS)
    _wait_for_intake(street_var)
    try:
        yield server, street_var
    finally:
        server.stop()


def _wait_for_intake(var: Path, timeout_s: float = 20.0) -> None:
    store = ReviewStore(var / "review" / "review.sqlite3")
    try:
        deadline = time.monotonic() + timeout_s
        while len(store.cases.all_case_ids()) < queued_case_count(var):
            assert time.monotonic() < deadline, "the review server did not take the queued cases"
            time.sleep(0.1)
    finally:
        store.close()


def _log_in(driver, server) -> None:
    driver.get(server.url)
    assert "/login" in driver.current_url  # every page needs a user
    driver.find_element(By.ID, "name").send_keys(server.user)
    driver.find_element(By.ID, "password").send_keys(server.password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.ID, "case-cards")))


def _press(driver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


# One script, so the answer comes from one document even while the browser navigates.
_LOADED_CASE = """
const root = document.getElementById('case');
const img = document.querySelector('.pictures figure.main img');
const shown = document.readyState === 'complete' && (!img || (img.complete && img.naturalWidth > 0));
return root && shown ? root.dataset.caseId : null;
"""


def _case_page_ready(driver, case_id: str | None = None) -> str:
    """Waits until a case page (any, or ``case_id``) shows its main picture; returns its case id."""
    def loaded(d):
        shown = d.execute_script(_LOADED_CASE)
        return shown if shown and (case_id is None or shown == case_id) else False
    return WebDriverWait(driver, 15).until(loaded)


def _full_page_screenshot(driver, path: Path) -> None:
    """The whole page, clip player and audit trail included, not only the first screenful."""
    width, height = driver.get_window_size().values()
    driver.set_window_size(width, driver.execute_script("return document.documentElement.scrollHeight") + 140)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)


def test_officer_rejects_a_case_with_the_keyboard(browser, review_server):
    server, var = review_server
    assert server.url in server.line() and f"{server.user} / {server.password}" in server.line()  # what the demo prints
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _log_in(browser, server)

    cards = browser.find_elements(By.CSS_SELECTOR, "#case-cards .card")
    assert len(cards) == queued_case_count(var)  # the list opens on 待审核: every case is new
    assert "待审核" in browser.find_element(By.ID, "case-cards").text
    assert {"机动车乱停放", "故障报警"} <= {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".violation")}
    assert cards[0].get_attribute("data-case-id") == FAULT_CASE  # newest first
    browser.save_screenshot(str(SCREENSHOTS / "review-list.png"))

    _press(browser, "j")  # the second card: the newest vehicle case
    selected = browser.find_element(By.CSS_SELECTOR, "#case-cards .card.selected")
    case_id = selected.get_attribute("data-case-id")
    assert selected == browser.find_elements(By.CSS_SELECTOR, "#case-cards .card")[1]
    _press(browser, "\ue007")  # Enter
    assert _case_page_ready(browser, case_id) == case_id
    page = browser.find_element(By.TAG_NAME, "main").text
    for label in ("标注快照", "原始画面", "首次发现", "视频片段", "网格编码", "370181001001999", "36.700100"):
        assert label in page, label
    assert browser.find_element(By.ID, "case-status").text == "待审核"
    assert browser.find_element(By.ID, "clip").get_attribute("src").endswith(f"/api/cases/{case_id}/evidence/clip.mp4")
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []  # no script error, no resource refused by the content security policy
    screenshot = SCREENSHOTS / "review-page.png"
    _full_page_screenshot(browser, screenshot)
    print(f"\nreview page screenshot: {screenshot}")

    _press(browser, "r")
    picker = browser.find_element(By.ID, "reject-picker")
    assert picker.is_displayed()
    _press(browser, "2")  # 误检
    assert browser.find_element(By.CSS_SELECTOR, "#reject-picker input[value=detector_error]").is_selected()
    _press(browser, "\ue007")
    banner = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "done-banner")))
    assert f"案件 {case_id} 已驳回" in banner.text  # and the next case is open, for the next decision
    assert browser.find_element(By.ID, "case").get_attribute("data-case-id") != case_id

    browser.find_element(By.ID, "done-link").click()
    _case_page_ready(browser, case_id)
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
        _wait_for_intake(street_var)
        _log_in(browser, server)
        _press(browser, "\ue007")
        current = _case_page_ready(browser)
        started = time.perf_counter()
        for decided in range(TRIAGE_CASES):
            if decided % 3 == 2:
                _press(browser, "r", "2", "\ue007")
            else:
                _press(browser, "c")
            WebDriverWait(browser, 15).until(lambda d, was=current: d.execute_script(
                "const done = document.getElementById('done-link'); return done && done.textContent === arguments[0];",
                was))
            current = _case_page_ready(browser)
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

