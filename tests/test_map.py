"""The map (地图, issue 15 item 8): cameras by their coordinates with their health, the open cases at
their cameras, filters, who sees what, a page that needs nothing from outside, and an operator's tile
server allowed by the CSP only when set. The last test draws it in headless Chromium at desktop and
phone size and saves the screenshots to docs/screenshots/shift/map-*.jpg.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from browser_support import case_page_ready, chromium, log_in, page_screenshot, viewport, wait_for_intake
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from review_support import FAULT_CASE, STREAMS, login, running_app
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.engine.health import CameraReport, Counters, PatrolCollector, PatrolReport, Rates
from pipeline.review import workflow
from pipeline.review.server import start_review_server
from pipeline.review.settings import ReviewSettings

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "docs" / "screenshots" / "shift"
SAMPLE, EAST = "shuangshan-sample", "shuangshan-001"  # streams/sample-street.yaml, streams/examples/shuangshan-001.yaml
TILES = "https://tiles.example.org/{z}/{x}/{y}.png"


def two_cameras(folder: Path) -> Path:
    """A camera folder with the sample street's camera and the example camera about 110 m east of it."""
    folder.mkdir(parents=True)
    shutil.copy(STREAMS / "sample-street.yaml", folder)
    shutil.copy(STREAMS / "examples" / f"{EAST}.yaml", folder)
    return folder


def worker_metrics() -> bytes:
    """A worker's /metrics: the sample camera live with a fresh picture, the east camera stalled."""
    now = time.time()
    live = CameraReport(SAMPLE, "live", now - 60, Counters(900, 300), Rates(received_fps=15.0, analysed_fps=5.0),
                        0.05, now - 0.5, 1, 0, 0, 1, 0, None)
    stalled = CameraReport(EAST, "stalled", now - 30, Counters(), Rates(), None, now - 40, 0, 1, 0, 0, 1, None)
    registry = CollectorRegistry()
    registry.register(PatrolCollector(lambda: PatrolReport([live, stalled], 0, 0, None)))
    return generate_latest(registry)


class Worker(BaseHTTPRequestHandler):
    """/metrics as a worker serves it, and /tiles/{z}/{x}/{y}.png as a tile server would (each counted)."""

    tile = b""
    tiles_served: list[str] = []

    def do_GET(self):
        if self.path.startswith("/tiles/"):
            type(self).tiles_served.append(self.path)
            body, kind = self.tile, "image/png"
        else:
            body, kind = worker_metrics(), "text/plain; version=0.0.4"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def worker():
    """A local worker and tile server: its base URL."""
    handler = type("Handler", (Worker,), {"tiles_served": [], "tile": cv2.imencode(
        ".png", np.full((256, 256, 3), (214, 228, 236), np.uint8))[1].tobytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def get_map(client, name: str, **params) -> dict:
    answer = client.get("/api/map", headers=login(client, name), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def make_overdue(client, case_id: str, monkeypatch) -> None:
    """Confirm, file and dispatch ``case_id`` three days ago: its two-to-24-hour deadline has passed."""
    chief = login(client, "chief")
    monkeypatch.setattr(workflow, "clock", lambda: time.time() - 3 * 86400)
    for step, body in (("confirm", {}), ("file", {}), ("dispatch", {"unit": "shuangshan-squad"})):
        answer = client.post(f"/api/cases/{case_id}/{step}", headers=chief, json=body)
        assert answer.status_code == 200, answer.text
    monkeypatch.setattr(workflow, "clock", time.time)


# -- the figures ----------------------------------------------------------------------------------


def test_the_map_places_each_camera_by_its_coordinates_with_its_health_and_the_cases_at_it(
        street_var, tmp_path, worker):
    url, _ = worker
    with running_app(street_var, streams_dir=two_cameras(tmp_path / "streams"),
                     metrics_urls=(f"{url}/metrics",)) as client:
        figures = get_map(client, "chief")
        cameras = {camera["camera_id"]: camera for camera in figures["cameras"]}
        assert set(cameras) == {SAMPLE, EAST}
        sample, east = cameras[SAMPLE], cameras[EAST]
        assert (sample["lat"], sample["lon"], sample["name"]) == (36.7001, 117.5412, "双山大街 样例路段 (synthetic)")
        assert (sample["health"], sample["health_label"], sample["state_label"]) == ("ok", "正常", "在线")
        assert (east["lat"], east["lon"], east["address"]) == (36.70, 117.54, "章丘区双山大街 东段")
        assert (east["health"], east["health_label"], east["state_label"]) == ("degraded", "异常", "卡顿")
        store = client.app.state.review.store
        every_case = set(store.cases.all_case_ids())
        assert {case["case_id"] for case in figures["cases"]} == every_case and len(every_case) == 5
        for case in figures["cases"]:
            assert (case["camera_id"], case["lat"], case["lon"]) == (SAMPLE, 36.7001, 117.5412)
            assert case["url"] == f"/cases/{case['case_id']}" and case["status_label"] == "待审核"
            assert case["overdue"] is False and case["violation_label"]
        assert (sample["open_cases"], east["open_cases"], figures["total_open"]) == (5, 0, 5)
        assert figures["summary"] == "摄像头 2 个（正常 1、异常 1）；待办案件 5 件（超期 0 件）"
        assert figures["tiles"] is None and figures["workers_down"] == 0


def test_only_open_cases_are_shown_and_the_filters_pick_a_kind_or_the_overdue(client, monkeypatch):
    chief = login(client, "chief")
    patrol = sorted(case_id for case_id in client.app.state.review.store.cases.all_case_ids() if case_id != FAULT_CASE)
    assert client.post(f"/api/cases/{patrol[0]}/reject", headers=chief,
                       json={"reason": "detector_error"}).status_code == 200
    make_overdue(client, patrol[1], monkeypatch)
    figures = get_map(client, "officer1")
    shown = {case["case_id"]: case for case in figures["cases"]}
    assert patrol[0] not in shown and len(shown) == 4 and figures["total_open"] == 4  # a rejected case is done with
    late = shown[patrol[1]]
    assert (late["status"], late["status_label"], late["overdue"]) == ("dispatched", "已派遣", True)
    assert late["deadline"] and "超期 1 件" in figures["summary"]
    overdue = get_map(client, "officer1", overdue="true")
    assert [case["case_id"] for case in overdue["cases"]] == [patrol[1]] and overdue["overdue_only"] is True
    faults = get_map(client, "officer1", violation="camera_fault")
    assert [case["case_id"] for case in faults["cases"]] == [FAULT_CASE]
    assert faults["cases"][0]["violation_label"] == "故障报警" and faults["cameras"][0]["open_cases"] == 1


def test_officers_and_supervisors_see_the_cases_and_an_admin_the_cameras_alone(client):
    assert len(get_map(client, "officer2")["cases"]) == 5
    admin = get_map(client, "root")
    assert admin["cases_shown"] is False and admin["cases"] == [] and admin["total_open"] == 0
    assert [camera["camera_id"] for camera in admin["cameras"]] == [SAMPLE]
    assert admin["summary"] == "摄像头 1 个（未知 1）；系统管理员不查看案件，地图只显示摄像头"
    assert client.get("/api/map").status_code == 401
    spec = client.get("/openapi.json", headers=login(client, "root")).json()
    assert spec["paths"]["/api/map"]["get"]["tags"] == ["map"]


def test_the_map_page_carries_its_figures_and_loads_nothing_from_outside(client):
    officer = login(client, "officer1")
    assert 'href="/map"' in client.get("/", headers=officer).text  # in the nav
    page = client.get("/map", headers=officer, params={"violation": "camera_fault", "overdue": "1"})
    assert page.status_code == 200
    text = page.text
    assert '<svg id="map"' in text and 'src="/static/map.js"' in text and 'href="/static/map.css"' in text
    assert '<option value="camera_fault" selected>故障报警</option>' in text
    assert 'id="map-overdue" checked' in text and "只看超期" in text
    carried = json.loads(re.search(r'<script type="application/json" id="map-data">(.*?)</script>', text, re.S)[1])
    assert carried["violation"] == "camera_fault" and carried["overdue_only"] is True and carried["cases"] == []
    assert f'<tr data-camera-id="{SAMPLE}" class="health-unknown">' in text and "未知" in text
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' data:;" in policy and "script-src 'self';" in policy and "http" not in policy
    assert re.search(r"https?://", client.get("/static/map.js").text.replace("http://www.w3.org/2000/svg", "")) is None
    assert client.get("/map", follow_redirects=False).status_code == 303  # to the login page


def test_a_tile_server_set_by_the_operator_is_drawn_under_the_map_and_only_its_origin_allowed(street_var):
    with running_app(street_var, map_tiles=TILES, map_attribution="© 示例地图") as client:
        figures = get_map(client, "chief")
        assert figures["tiles"] == {"url_template": TILES, "attribution": "© 示例地图"}
        page = client.get("/map", headers=login(client, "chief"))
        policy = page.headers["content-security-policy"]
        assert "img-src 'self' https://tiles.example.org data:;" in policy
        assert "script-src 'self';" in policy and "default-src 'self';" in policy and "media-src 'self';" in policy
        assert "© 示例地图" in page.text


@pytest.mark.parametrize("template", [
    "ftp://tiles.example.org/{z}/{x}/{y}.png",  # not http(s)
    "https://tiles.example.org/{z}/{x}.png",  # no {y}
    "https://{s}.tiles.example.org/{z}/{x}/{y}.png",  # a placeholder in the origin: more than one origin
    "https://tiles.example.org/{z}/{x}/{y}.png; script-src *",  # would write into the CSP
    "https://user:pw@tiles.example.org/{z}/{x}/{y}.png",
])
def test_a_tile_template_must_be_one_http_origin_with_z_x_and_y(template, tmp_path):
    with pytest.raises(ValidationError, match="tile URL template"):
        ReviewSettings(db_path=tmp_path / "review.sqlite3", map_tiles=template)


# -- in a browser ---------------------------------------------------------------------------------

_DRAWN = """
const svg = document.getElementById('map'), frame = document.getElementById('map-frame');
if (!svg || Number(svg.getAttribute('width')) !== Math.max(280, Math.floor(frame.clientWidth))) return null;
return {view: svg.dataset.view, cameras: Array.from(svg.querySelectorAll('g.camera'), g => [g.dataset.cameraId,
        g.getAttribute('class')]), cases: Array.from(svg.querySelectorAll('a.case-marker'), a => a.dataset.caseId),
        scale: svg.querySelector('#scale-bar text').textContent, north: !!svg.querySelector('#north-arrow'),
        tiles: svg.querySelectorAll('.tiles image').length};
"""


def drawn(driver, timeout_s: float = 15) -> dict:
    """The map as drawn at the present viewport's width."""
    return WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script(_DRAWN))


def save_jpeg(png: Path, jpeg: Path) -> None:
    picture = cv2.imread(str(png))
    assert picture is not None
    assert cv2.imwrite(str(jpeg), picture, [cv2.IMWRITE_JPEG_QUALITY, 72, cv2.IMWRITE_JPEG_OPTIMIZE, 1])


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.servers
def test_the_map_in_chromium_shows_the_cameras_and_a_case_marker_at_desktop_and_phone_size(
        street_var, tmp_path, worker, monkeypatch):
    url, handler = worker
    streams = two_cameras(tmp_path / "streams")
    driver = chromium((1366, 900))
    server = start_review_server(street_var, port=0, streams_dir=streams, metrics_urls=[f"{url}/metrics"])
    try:
        wait_for_intake(street_var)
        token = httpx.post(f"{server.url}api/login", json={"name": server.user, "password": server.password})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        listed = httpx.get(f"{server.url}api/cases", headers=headers, params={"per_page": 100}).json()["items"]
        late = sorted(case["case_id"] for case in listed if case["case_id"] != FAULT_CASE)[0]
        monkeypatch.setattr(workflow, "clock", lambda: time.time() - 3 * 86400)
        for step, body in (("confirm", {}), ("file", {}), ("dispatch", {"unit": "shuangshan-squad"})):
            assert httpx.post(f"{server.url}api/cases/{late}/{step}", headers=headers, json=body).status_code == 200
        monkeypatch.setattr(workflow, "clock", time.time)

        log_in(driver, server.url, server.user, server.password)
        driver.get(f"{server.url}map")
        shown = drawn(driver)
        assert shown["view"] == "local" and shown["north"] and shown["scale"].endswith("米")
        assert dict(shown["cameras"]) == {SAMPLE: "camera health-ok", EAST: "camera health-degraded"}
        assert len(shown["cases"]) == 5 and late in shown["cases"]
        assert driver.find_element(By.CSS_SELECTOR, f'a.case-marker[data-case-id="{late}"] path.mk-overdue')
        assert console_errors(driver) == []  # no script error, nothing the CSP refused
        SHOTS.mkdir(parents=True, exist_ok=True)
        for size in ("desktop", "phone"):
            with viewport(driver, size):
                on_screen = drawn(driver)
                assert len(on_screen["cases"]) == 5 and len(on_screen["cameras"]) == 2
                png = tmp_path / f"map-{size}.png"
                page_screenshot(driver, png)
                save_jpeg(png, SHOTS / f"map-{size}.jpg")
        drawn(driver)  # redrawn at the window's own width
        time.sleep(0.3)  # past the resize's redraw
        driver.find_element(By.CSS_SELECTOR, f'#map g.camera[data-camera-id="{SAMPLE}"]').click()
        assert "双山大街 样例路段" in driver.find_element(By.ID, "map-info").text
        driver.find_element(By.CSS_SELECTOR, f'a.case-marker[data-case-id="{late}"]').click()
        assert case_page_ready(driver, late) == late
    finally:
        server.stop()

    # The same street with a tile server set: its tiles are drawn under the SVG, the CSP lets them in.
    server = start_review_server(street_var, port=0, streams_dir=streams,
                                 map_tiles=f"{url}/tiles/{{z}}/{{x}}/{{y}}.png")
    try:
        log_in(driver, server.url, server.user, server.password)
        driver.get(f"{server.url}map")
        shown = drawn(driver)
        assert shown["view"] == "tiles" and shown["tiles"] >= 1 and len(shown["cameras"]) == 2
        WebDriverWait(driver, 10).until(lambda _: len(handler.tiles_served) >= shown["tiles"])
        assert all(re.fullmatch(r"/tiles/1[5-9]/\d+/\d+\.png", path) for path in handler.tiles_served)
        assert console_errors(driver) == []
    finally:
        server.stop()
        driver.quit()
