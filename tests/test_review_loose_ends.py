"""Loose ends of issues 15 and 16 in the review service: 复核未通过 in the statistics, the assignee named
by their 姓名, `patrol serve --claim-minutes`, the users page's account buttons, no assignment to a
disabled account, and 413 and 503 declared in the OpenAPI where they can come.
"""

from __future__ import annotations

import csv
import io
import time

import cv2
import numpy as np
import pytest
from browser_support import chromium, wait_for_intake
from openpyxl import load_workbook
from review_support import FAULT_CASE, PASSWORD, STREAMS, add_accounts, login
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from pipeline.cli.main import main
from pipeline.review import workflow
from pipeline.review.recheck import CameraRechecks
from pipeline.review.server import start_review_server
from pipeline.types import RecheckFinding

MODEL = {"name": "patrol-street", "sha256": "0" * 64}


def patrol_cases(client) -> list[str]:
    return sorted(case_id for case_id in client.app.state.review.store.cases.all_case_ids() if case_id != FAULT_CASE)


def dispatched_days_ago(client, case_id: str, monkeypatch, days: float = 3) -> None:
    """Confirm, file and dispatch the case ``days`` ago: its deadline (hours after) has passed."""
    chief = login(client, "chief")
    monkeypatch.setattr(workflow, "clock", lambda: time.time() - days * 86400)
    for step, body in (("confirm", {}), ("file", {}), ("dispatch", {"unit": "shuangshan-squad"})):
        answer = client.post(f"/api/cases/{case_id}/{step}", headers=chief, json=body)
        assert answer.status_code == 200, answer.text
    monkeypatch.setattr(workflow, "clock", time.time)


# -- 复核未通过 in the statistics ---------------------------------------------------------------------


def test_the_statistics_count_cases_whose_camera_recheck_failed(client, monkeypatch):
    failed, cleared = patrol_cases(client)[:2]
    for case_id in (failed, cleared):
        dispatched_days_ago(client, case_id, monkeypatch)
    review = client.app.state.review
    rechecks = CameraRechecks(review.store.cases, review.evidence)
    photo = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    for case_id, still_present in ((failed, True), (cleared, False)):
        rechecks.record(case_id, RecheckFinding(still_present, 0.9, "2026-03-05T08:00:00+08:00", MODEL, photo))
    cases = review.store.cases
    assert cases.get(failed).loop.recheck_failed and not cases.get(cleared).loop.recheck_failed

    chief = login(client, "chief")
    stats = client.get("/api/stats", headers=chief).json()
    assert stats["total"]["recheck_failed"] == 1 and stats["total"]["overdue"] == 2
    by_camera = {row["key"]: row["recheck_failed"] for row in stats["by_camera"]}
    assert by_camera == {"shuangshan-sample": 1}
    rows = list(csv.DictReader(io.StringIO(client.get("/api/stats.csv", headers=chief).content.decode("utf-8-sig"))))
    assert next(row for row in rows if row["分组"] == "合计")["复核未通过"] == "1"
    book = load_workbook(io.BytesIO(client.get("/api/stats.xlsx", headers=chief).content), read_only=True)
    header, total = book["合计"].iter_rows(values_only=True)
    assert dict(zip(header, total))["复核未通过"] == 1  # trailing empty cells (medians not reached) are left out
    page = client.get("/stats", headers=chief).text
    assert '<strong id="recheck-failed">1</strong>' in page and "<th>复核未通过</th>" in page


# -- the assignee by their 姓名 -------------------------------------------------------------------------


def test_an_officer_refused_a_case_assigned_to_a_colleague_reads_the_colleagues_name(client):
    store = client.app.state.review.store
    store.accounts.set_profile("officer1", "王小明", "3701-0001", actor="test-setup")
    chief, officer2 = login(client, "chief"), login(client, "officer2")
    case_id = patrol_cases(client)[0]
    assert client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer1"}).status_code == 200
    for action, body in (("claim", {}), ("confirm", {})):
        refused = client.post(f"/api/cases/{case_id}/{action}", headers=officer2, json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == f"案件 {case_id} 已分派给 王小明，请选择其他案件"


# -- no assignment to a disabled account ------------------------------------------------------------


def test_a_case_is_not_assigned_to_a_disabled_account(client):
    root, chief = login(client, "root"), login(client, "chief")
    client.app.state.review.store.accounts.set_profile("officer2", "李娜", None, actor="test-setup")
    assert client.post("/api/users/officer2/disable", headers=root).status_code == 200
    case_id = patrol_cases(client)[0]
    refused = client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer2"})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "李娜（officer2）的账号已停用，不能分派案件：请选择在用的执法队员或中队长"
    case = client.get(f"/api/cases/{case_id}", headers=chief).json()
    assert case["assignee"] is None
    assert [entry["action"] for entry in client.get(f"/api/cases/{case_id}/audit", headers=chief).json()] == [
        "case_received"]
    assert client.post("/api/users/officer2/enable", headers=root).status_code == 200
    assert client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer2"}).status_code == 200



def test_pages_name_the_assignee_by_their_name_and_tell_an_officer_to_file_a_confirmed_case(client):
    client.app.state.review.store.accounts.set_profile("officer1", "王小明", None, actor="test-setup")
    chief, officer = login(client, "chief"), login(client, "officer1")
    case_id = patrol_cases(client)[0]
    assert client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer1"}).status_code == 200
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer, json={}).status_code == 200
    signed_in = client.post("/login", data={"name": "officer1", "password": PASSWORD}, follow_redirects=False)
    assert signed_in.status_code == 303
    listed = client.get("/", params={"status": "confirmed"}).text
    assert "分派 王小明" in listed and "分派 officer1" not in listed
    page = client.get(f"/cases/{case_id}").text
    assert "分派 王小明" in page and "已确认，请在下方处置流程中立案" in page and "已处理；如需更改" not in page


def test_a_request_the_api_cannot_read_is_answered_in_chinese_in_the_documented_shape(client):
    officer = login(client, "officer1")
    answer = client.post("/api/cases/bulk", headers=officer, json={"action": "explode"})
    assert answer.status_code == 422
    errors = answer.json()["detail"]
    assert all(set(error) >= {"loc", "msg", "type"} for error in errors)  # FastAPI's HTTPValidationError
    said = {error["type"]: error["msg"] for error in errors}
    assert said["missing"] == "case_ids：必须填写"
    assert said["literal_error"] == "action：应为以下之一：confirm、reject"
    page = client.post("/login", data={"name": "officer1", "password": PASSWORD}, follow_redirects=False)
    assert page.status_code == 303
    shown = client.get("/", params={"page": "two"}, headers={"accept": "text/html"})
    assert shown.status_code == 422 and "page：应为整数" in shown.text and "Input should" not in shown.text

# -- patrol serve --claim-minutes --------------------------------------------------------------------


def test_patrol_serve_takes_the_claim_length_in_minutes_and_the_map_tiles(tmp_path, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    monkeypatch.setenv("PATROL_MAP_TILES", "https://tiles.example.org/{z}/{x}/{y}.png")
    common = ["serve", "--db", str(tmp_path / "review.sqlite3"), "--queue", f"sqlite:///{tmp_path / 'queue.sqlite3'}",
              "--evidence", str(tmp_path / "evidence"), "--streams", str(STREAMS)]
    assert main([*common, "--claim-minutes", "25"]) == 0
    settings = served[-1].state.review.settings
    assert settings.claim_s == 25 * 60 and settings.map_tiles == "https://tiles.example.org/{z}/{x}/{y}.png"
    served[-1].state.review.close()
    monkeypatch.delenv("PATROL_MAP_TILES")
    assert main(common) == 0
    assert served[-1].state.review.settings.claim_s == 600.0 and served[-1].state.review.settings.map_tiles is None
    served[-1].state.review.close()
    for wrong in ("0", "-5", "481", "ten"):
        with pytest.raises(SystemExit) as refused:
            main([*common, "--claim-minutes", wrong])
        assert refused.value.code == 2


# -- 413 and 503 in the OpenAPI ---------------------------------------------------------------------


def test_the_openapi_declares_413_on_every_body_and_503_where_the_evidence_store_is_reached(client):
    spec = client.get("/openapi.json", headers=login(client, "root")).json()
    with_body = [(path, method, operation) for path, operations in spec["paths"].items()
                 for method, operation in operations.items() if "requestBody" in operation]
    assert len(with_body) > 15
    for path, method, operation in with_body:
        assert "413" in operation["responses"], f"{method} {path}"
    paths = spec["paths"]
    for path, method in (("/api/cases/{case_id}", "get"), ("/api/cases/{case_id}/confirm", "post"),
                         ("/api/cases/{case_id}/evidence/{name}", "get"), ("/api/cases/{case_id}/bundle", "get"),
                         ("/api/cases/{case_id}/dispose", "post"), ("/api/cases/{case_id}/dispatch", "post")):
        assert "evidence store cannot be reached" in paths[path][method]["responses"]["503"]["description"], path
    assert "CJK font" in paths["/api/cases/{case_id}/dossier.pdf"]["get"]["responses"]["503"]["description"]
    assert "evidence store" in paths["/api/cases/{case_id}/dossier.pdf"]["get"]["responses"]["503"]["description"]
    for path in ("/api/cases/{case_id}/audit", "/api/cases", "/api/stats"):
        assert "503" not in paths[path]["get"]["responses"], path
    assert "503" in paths["/api/login"]["post"]["responses"]  # too many logins at once
    assert "503" in paths["/api/me/password"]["post"]["responses"]
    too_large = client.post("/api/login", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                            headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413 and "上限" in too_large.json()["detail"]


# -- the users page's account buttons ---------------------------------------------------------------


def test_the_users_page_offers_each_account_its_buttons_with_chinese_confirmations(client):
    root = login(client, "root")
    client.app.state.review.store.accounts.set_profile("officer1", "王小明", None, actor="test-setup")
    page = client.get("/users", headers=root).text
    assert 'src="/static/users.js"' in page
    row = page[page.index('data-name="officer1"'):page.index('data-name="officer2"')]
    assert 'data-action="disable" data-confirm="确定停用 王小明（officer1） 的账号吗？' in row
    assert 'data-action="role" data-confirm="确定将 王小明（officer1） 的角色改为「{role}」吗？' in row
    assert 'data-action="password"' in row and 'data-action="revoke-sessions"' in row and "强制下线" in row
    own = page[page.index('data-name="root"'):]
    assert 'data-action="disable"' not in own.split("</tr>")[0]  # nobody disables themselves here
    assert client.post("/api/users/officer1/disable", headers=root).status_code == 200
    assert 'data-action="enable" data-confirm="确定启用 王小明（officer1） 的账号吗？' in client.get(
        "/users", headers=root).text
    assert client.get("/users", headers=login(client, "chief")).status_code == 403


@pytest.mark.servers
def test_an_admin_disables_and_changes_the_role_of_an_account_on_the_users_page(street_var):
    add_accounts(street_var / "review" / "review.sqlite3")
    server = start_review_server(street_var, port=0, streams_dir=STREAMS)
    driver = chromium((1366, 900))
    try:
        wait_for_intake(street_var)
        driver.get(f"{server.url}users")
        driver.find_element(By.ID, "name").send_keys("root")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.ID, "users")))

        def row() -> object:
            return driver.find_element(By.CSS_SELECTOR, 'td.account-actions[data-name="officer2"]')

        def press(action: str, *, yes: bool) -> str:
            """Presses the row's button and answers its confirmation, whose text it returns; yes: waits
            until the page has reloaded with the change."""
            driver.execute_script("window.beforeThePress = true;")  # gone once the page has reloaded
            row().find_element(By.CSS_SELECTOR, f'button[data-action="{action}"]').click()
            alert = WebDriverWait(driver, 5).until(ready.alert_is_present())
            question = alert.text
            if not yes:
                alert.dismiss()
                return question
            alert.accept()
            WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(lambda d: d.execute_script(
                "return !window.beforeThePress && document.readyState === 'complete'"))
            return question

        assert press("disable", yes=False).startswith("确定停用 officer2 的账号吗？")  # no: nothing changes
        assert row().find_elements(By.CSS_SELECTOR, 'button[data-action="disable"]')
        press("disable", yes=True)
        assert row().find_elements(By.CSS_SELECTOR, 'button[data-action="enable"]')
        assert "已停用" in row().find_element(By.XPATH, "..").text

        Select(row().find_element(By.CSS_SELECTOR, "select.role-choice")).select_by_value("supervisor")
        assert press("role", yes=True) == "确定将 officer2 的角色改为「中队长」吗？新角色从其下一次操作起生效。"
        assert row().find_element(By.XPATH, "./preceding-sibling::td[2]").text == "中队长"

        row().find_element(By.CSS_SELECTOR, 'button[data-action="password"]').click()  # no password typed
        assert driver.find_element(By.ID, "users-error").text == "临时密码至少需要 10 个字符"
        assert [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == []
    finally:
        driver.quit()
        server.stop()
