"""Claims on cases, the list's live changes, stale decisions, and officers as people (姓名, 执法证号).

TestClient only, on the replayed street of review_support: two officers working one queue must
never decide the same case, and every claim, release, takeover and decision stays in the audit
chain, which ``verify`` still finds whole at the end of each test.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import yaml
from review_support import PASSWORD, STREAMS, login, running_app

from pipeline.cli.main import main
from pipeline.review import accounts, claims
from pipeline.review.auth import POLL_HEADER
from pipeline.review.signed_heads import anchor_paths
from pipeline.review.store import ReviewStore
from pipeline.review.verify import verify

WANG = {"display_name": "王小明", "badge_number": "37-0101-88"}


@pytest.fixture
def frozen_clock(monkeypatch):
    """The claims' clock, moved by hand: ``now[0] += 601`` is ten minutes and a second later."""
    now = [datetime(2026, 3, 2, 14, 22, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()]  # the district's clock
    monkeypatch.setattr(claims, "clock", lambda: now[0])
    return now


def new_cases(client, headers, **params) -> list[dict]:
    response = client.get("/api/cases", headers=headers, params={"status": "new", "per_page": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ids(cases: list[dict]) -> list[str]:
    return [case["case_id"] for case in cases]


def audit_of(client, case_id: str, *actions: str) -> list:
    return [entry for entry in client.app.state.review.store.audit.entries(case_id) if entry.action in actions]


def assert_audit_verifies(client) -> None:
    """The chain is whole, its signed heads hold, and every case's state is what its last entry says."""
    review = client.app.state.review
    key, heads = anchor_paths(review.settings.db_path, review.settings.audit_key, review.settings.signed_heads)
    report = verify(review.store, review.evidence, key_path=key, heads_path=heads)
    assert report.ok, report.problems


def give_wang_xiaoming(client) -> None:
    """officer1 is 王小明 with a badge number, set by the admin."""
    answer = client.post("/api/users/officer1/profile", headers=login(client, "root"), json=WANG)
    assert answer.status_code == 200, answer.text


# -- claims -------------------------------------------------------------------------------------


def test_two_officers_claim_different_cases_and_the_list_says_who_holds_what(client, frozen_clock):
    give_wang_xiaoming(client)
    officer1, officer2 = login(client, "officer1"), login(client, "officer2")
    first, second, *rest = ids(new_cases(client, officer1))
    taken = client.post(f"/api/cases/{first}/claim", headers=officer1, json={})
    assert taken.status_code == 200, taken.text
    assert taken.json()["claim"]["holder"] == "officer1" and taken.json()["claim"]["holder_name"] == "王小明"
    assert datetime.fromisoformat(taken.json()["claim"]["expires_at"]).timestamp() == frozen_clock[0] + 600
    assert client.post(f"/api/cases/{second}/claim", headers=officer2, json={}).status_code == 200

    listed = {case["case_id"]: case["claim"] for case in new_cases(client, officer1)}
    assert listed[first]["holder_name"] == "王小明" and listed[second]["holder"] == "officer2"
    assert all(listed[case_id] is None for case_id in rest)
    assert ids(new_cases(client, officer1, claim="mine")) == [first]
    assert ids(new_cases(client, officer1, claim="others")) == [second]
    assert ids(new_cases(client, officer2, claim="mine")) == [second]
    assert ids(new_cases(client, officer1, claim="unclaimed")) == rest
    assert client.get("/api/cases", headers=officer1, params={"claim": "everyone"}).status_code == 422

    page = client.get("/", headers=officer2, params={"claim": "others"}).text
    assert "王小明 认领中（至 14:32）" in page and second not in page
    assert client.post(f"/api/cases/{first}/confirm", headers=officer1, json={}).status_code == 200
    assert client.post(f"/api/cases/{second}/confirm", headers=officer2, json={}).status_code == 200
    assert_audit_verifies(client)


def test_deciding_a_case_another_officer_holds_is_refused_in_chinese(client, frozen_clock):
    give_wang_xiaoming(client)
    officer1, officer2 = login(client, "officer1"), login(client, "officer2")
    case_id = ids(new_cases(client, officer1))[0]
    assert client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).status_code == 200
    refused_by_b = [client.post(f"/api/cases/{case_id}/{action}", headers=officer2, json=body)
                    for action, body in (("confirm", {}), ("reject", {"reason": "detector_error"}), ("escalate", {}))]
    refused_by_b += [client.post(f"/api/cases/{case_id}/claim", headers=officer2, json={}),
                     client.post(f"/api/cases/{case_id}/release", headers=officer2)]
    for refused in refused_by_b:
        assert refused.status_code == 409 and refused.json()["code"] == "case_claimed", refused.text
        assert refused.json()["detail"].startswith("该案件已由 王小明 认领（至 14:32），")
    assert refused_by_b[0].json()["detail"] == "该案件已由 王小明 认领（至 14:32），请选择其他案件"
    page = client.get(f"/cases/{case_id}", headers=officer2).text
    assert "该案件已由 王小明 认领（至 14:32），请选择其他案件。" in page and 'data-state="theirs"' in page
    assert client.get(f"/api/cases/{case_id}", headers=officer2).json()["status"] == "new"
    assert [entry.actor for entry in audit_of(client, case_id, "claim", "confirm", "reject", "escalate")] == [
        "officer1"]
    assert_audit_verifies(client)


def test_a_claim_ends_when_its_time_is_up_with_no_job_to_end_it(client, frozen_clock):
    officer1, officer2 = login(client, "officer1"), login(client, "officer2")
    case_id = ids(new_cases(client, officer1))[0]
    assert client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).status_code == 200
    frozen_clock[0] += 599
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer2, json={}).status_code == 409
    frozen_clock[0] += 1  # ten minutes: the default claim
    assert new_cases(client, officer2)[0]["claim"] is None
    assert case_id in ids(new_cases(client, officer2, claim="unclaimed"))
    retaken = client.post(f"/api/cases/{case_id}/claim", headers=officer2, json={})
    assert retaken.status_code == 200 and retaken.json()["claim"]["holder"] == "officer2"
    [_, second] = audit_of(client, case_id, "claim")
    assert second.before == {"claimed_by": None, "claim_expires_at": None}  # the expired claim held nothing
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer2, json={}).status_code == 200
    assert_audit_verifies(client)


def test_the_claim_length_is_a_setting(street_var, frozen_clock):
    with running_app(street_var, claim_s=60) as client:
        officer1 = login(client, "officer1")
        case_id = ids(new_cases(client, officer1))[0]
        claim = client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).json()["claim"]
        assert datetime.fromisoformat(claim["expires_at"]).timestamp() == frozen_clock[0] + 60


def test_releasing_and_deciding_end_the_claim_and_both_are_audited(client, frozen_clock):
    officer1, officer2 = login(client, "officer1"), login(client, "officer2")
    released, decided = ids(new_cases(client, officer1))[:2]
    for case_id in (released, decided):
        assert client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).status_code == 200
    assert client.post(f"/api/cases/{released}/release", headers=officer1).json() == {"case_id": released,
                                                                                      "claim": None}
    assert client.post(f"/api/cases/{released}/release", headers=officer1).status_code == 200  # a no-op
    assert client.post(f"/api/cases/{released}/claim", headers=officer2, json={}).status_code == 200
    assert client.post(f"/api/cases/{decided}/confirm", headers=officer1, json={}).status_code == 200
    assert client.app.state.review.store.cases.get(decided).claim is None
    refused = client.post(f"/api/cases/{decided}/claim", headers=officer2, json={})
    assert refused.status_code == 409 and refused.json()["detail"] == (
        f"案件 {decided} 已处理（已确认），如需更改请联系中队长重新打开")

    # The case page's script frees its case on leaving with a beacon, which sends the CSRF token as a form field.
    beaconed = ids(new_cases(client, officer1, claim="unclaimed"))[0]
    client.post("/login", data={"name": "officer1", "password": PASSWORD})
    token = client.get(f"/cases/{beaconed}").text.split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post(f"/api/cases/{beaconed}/claim", json={}, headers={"X-CSRF-Token": token}).status_code == 200
    assert client.post(f"/api/cases/{beaconed}/release", data={"csrf_token": "forged"}).status_code == 403
    assert client.post(f"/api/cases/{beaconed}/release", data={"csrf_token": token}).status_code == 200
    assert [entry.action for entry in audit_of(client, beaconed, "claim", "claim_release")] == [
        "claim", "claim_release"]

    trail = [(entry.action, entry.actor, entry.before, entry.after) for entry in
             audit_of(client, released, "claim", "claim_release")]
    assert [row[:2] for row in trail] == [("claim", "officer1"), ("claim_release", "officer1"), ("claim", "officer2")]
    assert trail[0][2] == {"claimed_by": None, "claim_expires_at": None}
    assert trail[0][3]["claimed_by"] == "officer1"
    assert datetime.fromisoformat(trail[0][3]["claim_expires_at"]).timestamp() == frozen_clock[0] + 600
    assert trail[1][2] == trail[0][3] and trail[1][3] == {"claimed_by": None, "claim_expires_at": None}
    assert_audit_verifies(client)


def test_a_supervisor_takes_over_a_claim_and_the_takeover_is_audited(client, frozen_clock):
    give_wang_xiaoming(client)
    officer1, officer2, chief = (login(client, name) for name in ("officer1", "officer2", "chief"))
    case_id = ids(new_cases(client, officer1))[0]
    assert client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).status_code == 200
    assert client.post(f"/api/cases/{case_id}/claim", headers=officer2, json={"takeover": True}).status_code == 403
    assert client.post(f"/api/cases/{case_id}/claim", headers=chief, json={}).status_code == 409  # not by accident
    taken = client.post(f"/api/cases/{case_id}/claim", headers=chief, json={"takeover": True})
    assert taken.status_code == 200 and taken.json()["claim"]["holder"] == "chief"
    [_, takeover] = audit_of(client, case_id, "claim")
    assert takeover.actor == "chief" and takeover.detail["taken_over_from"] == "officer1"
    assert takeover.before["claimed_by"] == "officer1" and takeover.after["claimed_by"] == "chief"
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer1, json={}).status_code == 409
    history = client.get(f"/cases/{case_id}", headers=chief).text
    assert "（接管自 王小明）" in history and "None" not in history
    assert client.post(f"/api/cases/{case_id}/escalate", headers=chief, json={"note": "需要联合执法"}).status_code == 200
    assert_audit_verifies(client)


# -- the live list ------------------------------------------------------------------------------


def test_the_changes_endpoint_reports_what_came_and_changed_after_a_cursor(client):
    officer1, officer2 = login(client, "officer1"), login(client, "officer2")
    listed = client.get("/api/cases", headers=officer1, params={"status": "new"}).json()
    cursor = listed["cursor"]
    quiet = client.get("/api/cases/changes", headers=officer1, params={"after": cursor, "status": "new"}).json()
    assert quiet == {"cursor": cursor, "new": [], "changed": [], "gone": []}

    store = client.app.state.review.store
    newest = listed["items"][0]["case_id"]
    later = datetime.fromisoformat(listed["items"][0]["confirmed_wall"]) + timedelta(minutes=1)
    arrival = replace(store.cases.get(newest).record, case_id="P-0000000000000new", confirmed_wall=later.isoformat())
    assert store.cases.receive(arrival)  # as the queue intake stores one
    claimed, decided = ids(listed["items"])[1:3]
    client.post(f"/api/cases/{claimed}/claim", headers=officer2, json={})
    client.post(f"/api/cases/{decided}/confirm", headers=officer2, json={})
    client.get(f"/api/cases/{newest}/evidence/frame.jpg", headers=officer2)  # a look changes nothing

    changes = client.get("/api/cases/changes", headers=officer1, params={"after": cursor, "status": "new"}).json()
    assert ids(changes["new"]) == [arrival.case_id] and ids(changes["changed"]) == [claimed]
    assert changes["changed"][0]["claim"]["holder"] == "officer2" and changes["gone"] == [decided]
    assert changes["cursor"] == store.audit.head().seq
    everything = client.get("/api/cases/changes", headers=officer1, params={"after": cursor}).json()
    assert ids(everything["changed"]) == [claimed, decided] and everything["gone"] == []
    assert client.get("/api/cases/changes", headers=officer1, params={"after": changes["cursor"]}).json()["new"] == []
    assert client.get("/api/cases/changes", headers=officer1, params={"after": -1}).status_code == 422

    cards = client.get("/list/changes", headers=officer1, params={"after": cursor, "status": "new"}).text
    assert f'data-cursor="{changes["cursor"]}"' in cards
    assert cards.count('<template data-change="new">') == 1 and arrival.case_id in cards
    assert "officer2 认领中" in cards and f'data-change="gone" data-case-id="{decided}"' in cards
    assert_audit_verifies(client)


def test_a_polling_list_does_not_keep_its_session_from_going_idle(client, monkeypatch):
    now = [time.time()]
    monkeypatch.setattr(accounts, "time", SimpleNamespace(time=lambda: now[0]))
    working, polling = login(client, "officer2"), {**login(client, "officer1"), POLL_HEADER: "1"}
    answers = []
    for _ in range(3):  # 20, 40 and 60 minutes after both logins; a session ends after 30 idle ones
        now[0] += 20 * 60
        answers.append([client.get("/list/changes", headers=headers, follow_redirects=False).status_code
                        for headers in (polling, working)])
    assert answers == [[200, 200], [303, 200], [303, 200]]


def test_a_decision_from_a_stale_page_is_refused_with_what_changed(client):
    give_wang_xiaoming(client)
    officer1, officer2, chief = (login(client, name) for name in ("officer1", "officer2", "chief"))
    case_id = ids(new_cases(client, officer2))[0]
    seen = client.get(f"/api/cases/{case_id}", headers=officer2).json()["version"]
    client.get(f"/api/cases/{case_id}/evidence/frame.jpg", headers=officer2)  # views and claims keep the version
    client.post(f"/api/cases/{case_id}/claim", headers=officer2, json={})
    client.post(f"/api/cases/{case_id}/release", headers=officer2)
    assert client.get(f"/api/cases/{case_id}", headers=officer2).json()["version"] == seen
    assert client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer1"}).status_code == 200
    assert client.post(f"/api/cases/{case_id}/escalate", headers=officer1, json={}).status_code == 200

    stale = client.post(f"/api/cases/{case_id}/confirm", headers=officer2, json={"version": seen})
    assert stale.status_code == 409 and stale.json()["code"] == "case_changed"
    detail = stale.json()["detail"]
    assert detail.startswith(f"案件 {case_id} 在您打开后已有变化：王小明 于 ") and "上报，现为“已上报”" in detail
    assert detail.endswith("请重新加载此案件，看过最新情况后再处理")
    reopened = client.post(f"/api/cases/{case_id}/reopen", headers=chief, json={"note": "复核", "version": seen})
    assert reopened.status_code == 409  # a supervisor's stale page too
    current = client.get(f"/api/cases/{case_id}", headers=chief).json()["version"]
    assert client.post(f"/api/cases/{case_id}/reopen", headers=chief,
                       json={"note": "复核", "version": current}).status_code == 200
    assert 'id="reload-case"' in client.get(f"/cases/{case_id}", headers=officer2).text
    assert_audit_verifies(client)


# -- officers as people -------------------------------------------------------------------------


def test_a_decision_records_the_deciders_name_and_badge_number(client):
    root = login(client, "root")
    added = client.post("/api/users", headers=root, json={"name": "wang.xm", "role": "officer",
                                                          "password": PASSWORD, **WANG})
    assert added.status_code == 201 and added.json()["display_name"] == "王小明", added.text
    for bad in ({"badge_number": "37 0101"}, {"badge_number": "3" * 33}, {"display_name": "王" * 33}):
        assert client.post("/api/users/officer1/profile", headers=root, json=bad).status_code == 422, bad
    taken = client.post("/api/users/officer1/profile", headers=root, json={"badge_number": WANG["badge_number"]})
    assert taken.status_code == 409 and "执法证号" in taken.json()["detail"]

    wang = login(client, "wang.xm")
    case_id = ids(new_cases(client, wang))[0]
    decided = client.post(f"/api/cases/{case_id}/confirm", headers=wang, json={"note": "现场核实"}).json()
    assert decided["decision"]["decided_by"] == "wang.xm"
    assert (decided["decision"]["decided_by_name"], decided["decision"]["decided_by_badge"]) == tuple(WANG.values())
    [entry] = audit_of(client, case_id, "confirm")
    assert entry.actor == "wang.xm" and entry.detail == WANG
    # The entry keeps who decided as they were then; a later rename changes the account, not the history.
    assert client.post("/api/users/wang.xm/profile", headers=root,
                       json={"display_name": "王晓明", "badge_number": "37-0101-99"}).status_code == 200
    page = client.get(f"/cases/{case_id}", headers=wang).text
    assert "王小明（执法证号 37-0101-88）" in page and "执法证号 37-0101-88</span>" in page
    [change] = [e for e in client.app.state.review.store.audit.entries() if e.action == "profile_change"]
    assert change.actor == "root" and change.after == {"name": "wang.xm", "display_name": "王晓明",
                                                       "badge_number": "37-0101-99"}
    assert_audit_verifies(client)


def test_an_admin_names_officers_on_the_users_page_and_the_cli(client, tmp_path, capsys):
    client.post("/login", data={"name": "root", "password": PASSWORD})
    token = client.get("/users").text.split('name="csrf-token" content="')[1].split('"')[0]
    added = client.post("/users", data={"name": "li.si", "role": "officer", "password": PASSWORD,
                                        "display_name": "李四", "badge_number": "37-0002", "csrf_token": token},
                        follow_redirects=False)
    assert added.status_code == 303
    renamed = client.post("/users/officer2/profile", data={"display_name": "张三", "badge_number": "37-0003",
                                                           "csrf_token": token}, follow_redirects=False)
    assert renamed.status_code == 303
    page = client.get("/users").text
    assert 'value="李四"' in page and 'value="张三"' in page and 'value="37-0003"' in page
    refused = client.post("/users/officer1/profile", data={"badge_number": "37 0003", "csrf_token": token})
    assert refused.status_code == 422 and "执法证号" in refused.text

    database = tmp_path / "cli.sqlite3"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    assert main(["users", "add", "zhao.liu", "--role", "officer", "--password-file", str(password_file),
                 "--display-name", "赵六", "--badge", "37-0004", "--db", str(database)]) == 0
    assert main(["users", "set-profile", "zhao.liu", "--display-name", "赵六六", "--db", str(database)]) == 0
    assert main(["users", "add", "bad.badge", "--role", "officer", "--password-file", str(password_file),
                 "--badge", "37/0004", "--db", str(database)]) == 2
    assert main(["users", "list", "--db", str(database)]) == 0
    out = capsys.readouterr().out
    assert "added zhao.liu (officer, 姓名 赵六, 执法证号 37-0004)" in out
    assert "zhao.liu: 姓名 赵六六" in out and "zhao.liu\tofficer\tactive\t赵六六\t\n" in out


def test_officers_read_chinese_and_see_zones_and_cameras_by_name(street_var, tmp_path):
    streams = tmp_path / "streams"
    streams.mkdir()
    camera = yaml.safe_load((STREAMS / "sample-street.yaml").read_text(encoding="utf-8"))
    camera["zones"][0]["name"] = "路边禁停区"
    camera["url"] = str(STREAMS / camera["url"])
    (streams / "sample-street.yaml").write_text(yaml.safe_dump(camera, allow_unicode=True), encoding="utf-8")
    with running_app(street_var, streams_dir=streams) as client:
        officer1 = login(client, "officer1")
        parking = next(case for case in new_cases(client, officer1) if case["zone_id"] == camera["zones"][0]["id"])
        assert "路边禁停区" in client.get(f"/cases/{parking['case_id']}", headers=officer1).text
        assert '<option value="no-parking-kerb" >路边禁停区</option>' in client.get("/", headers=officer1).text
        assert "双山大街 样例路段" in client.get("/", headers=officer1).text
        assert client.get("/api/cases").json()["detail"].startswith("请先登录")
        assert client.get("/api/users", headers=officer1).json()["detail"] == "此操作仅限系统管理员，您的角色是执法队员"
        missing = client.get("/api/cases/P-nope", headers=officer1).json()
        assert missing == {"detail": "没有案件 P-nope", "code": "not_found"}


# -- an older store -----------------------------------------------------------------------------


def test_an_older_review_store_gains_the_claim_and_profile_columns(street_var, tmp_path):
    """A store from before claims and names: its cases read as unclaimed, its users as unnamed, and
    its first claim and decision work and verify."""
    with running_app(street_var) as client:
        case_id = ids(new_cases(client, login(client, "officer1")))[0]
    path = street_var / "review" / "review.sqlite3"
    conn = sqlite3.connect(path)
    for table, column in (("cases", "claimed_by"), ("cases", "claim_expires_at"), ("users", "display_name"),
                          ("users", "badge_number")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")  # as the file was before them
    conn.commit()
    conn.close()

    store = ReviewStore(path)
    try:
        assert store.cases.get(case_id).claim is None
        assert {user.display_name for user in store.accounts.users()} == {None}
    finally:
        store.close()
    with running_app(street_var) as client:
        officer1 = login(client, "officer1")
        assert client.post(f"/api/cases/{case_id}/claim", headers=officer1, json={}).status_code == 200
        assert client.post(f"/api/cases/{case_id}/confirm", headers=officer1, json={}).status_code == 200
        assert_audit_verifies(client)
