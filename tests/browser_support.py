"""What the page tests share: Debian's chromium and chromedriver driven by selenium, a login, a case
page that has shown its picture, screenshots (the whole page, at a desktop's or a phone's viewport),
and a review service whose intake has taken every queued case.
"""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from review_support import REPO, queued_case_count
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.review.store import ReviewStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "var" / "screenshots"
# (width, height) in CSS pixels: a common office screen, and a common phone held upright.
VIEWPORTS = {"desktop": (1366, 900), "phone": (390, 844)}


def chromium(window_size: tuple[int, int] = (1600, 1100)) -> webdriver.Chrome:
    """A headless Chromium in Chinese, its console kept for ``driver.get_log("browser")``; the caller quits it."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the page tests drive Debian's chromium and chromium-driver; `make test` installs them "
                    "(tests/servers/install-packages.sh)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={window_size[0]},{window_size[1]}", "--lang=zh-CN",
                     "--autoplay-policy=user-gesture-required"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see script and CSP errors
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


def log_in(driver, url: str, name: str, password: str) -> None:
    """Logs in on the login page every page sends a stranger to, and waits for the case list."""
    driver.get(url)
    assert "/login" in driver.current_url  # every page needs a user
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.ID, "case-cards")))


def press(driver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


# One script, so the answer comes from one document even while the browser navigates.
_LOADED_CASE = """
const root = document.getElementById('case');
const img = document.querySelector('.pictures figure.main img');
const shown = document.readyState === 'complete' && (!img || (img.complete && img.naturalWidth > 0));
return root && shown ? root.dataset.caseId : null;
"""


def case_page_ready(driver, case_id: str | None = None) -> str:
    """Waits until a case page (any, or ``case_id``) shows its main picture; returns its case id."""
    def loaded(d):
        shown = d.execute_script(_LOADED_CASE)
        return shown if shown and (case_id is None or shown == case_id) else False
    return WebDriverWait(driver, 15).until(loaded)


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page, clip player and audit trail included, not only the first screenful."""
    width, height = driver.get_window_size().values()
    driver.set_window_size(width, driver.execute_script("return document.documentElement.scrollHeight") + 140)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)


@contextmanager
def viewport(driver, name: str):
    """The page laid out as on ``name``'s screen (VIEWPORTS; "phone" as a touch device, its viewport
    meta honoured) until the block ends."""
    width, height = VIEWPORTS[name]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": name == "phone"})
    try:
        _next_frame(driver)
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _next_frame(driver) -> None:
    driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]));")


def page_screenshot(driver, path: Path) -> None:
    """The whole page at the current viewport's width, from its top to its end, as a PNG."""
    _next_frame(driver)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def screenshots_at_each_size(driver, folder: Path, name: str) -> list[Path]:
    """``{folder}/{name}-desktop.png`` and ``-phone.png``: the page now shown, whole, at each VIEWPORTS size."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for size in VIEWPORTS:
        with viewport(driver, size):
            paths.append(folder / f"{name}-{size}.png")
            page_screenshot(driver, paths[-1])
    return paths


def wait_for_intake(var: Path, timeout_s: float = 20.0) -> None:
    """Until the review store under ``var`` holds every case of its queue."""
    store = ReviewStore(var / "review" / "review.sqlite3")
    try:
        deadline = time.monotonic() + timeout_s
        while len(store.cases.all_case_ids()) < queued_case_count(var):
            assert time.monotonic() < deadline, "the review server did not take the queued cases"
            time.sleep(0.1)
    finally:
        store.close()
