"""The review API's contract, route by route, on real replayed cases."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from queue_contract import make_record, publish_raw
from review_support import FAULT_CASE, PASSWORD, login, running_app

from pipeline.engine.health import CameraReport, Counters, PatrolCollector, PatrolReport, Rates
from pipeline.evidence import LocalEvidenceStore, open_evidence_store
from pipeline.queue import RedisCaseQueue, SqliteCaseQueue
from pipeline.review import auth
from pipeline.review.body_limit import MAX_BODY_BYTES, BodyLimit
from pipeline.review.login_throttle import ACCOUNT_LIMIT, ADDRESS_LIMIT, LoginThrottle
from pipeline.review.settings import ReviewSettings


def all_cases(client, headers, **params) -> list[dict]:
    response = client.get("/api/cases", headers=headers, params={"per_page": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def audit_of(client, headers, case_id) -> list[dict]:
    response = client.get(f"/api/cases/{case_id}/audit", headers=headers)
    assert response.status_code == 200
    return response.json()


def test_review_imports_no_analysis_stage():
    """The review side runs on a box without the models: it must not pull in ingest, detect or track."""
    script = ("import sys, pipeline.review.app, pipeline.review.dataset, pipeline.review.verify; "
              "print(*sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.split()
    assert "pipeline.review.app" in loaded
    assert not [name for name in loaded if name.startswith(("pipeline.ingest", "pipeline.detect", "pipeline.track",
                                                            "pipeline.rules", "onnxruntime", "av"))]


# -- auth ---------------------------------------------------------------------------------------


def test_every_api_route_needs_a_user(client):
    spec = client.get("/openapi.json", headers=login(client, "root")).json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            if path == "/api/login":
                continue
            url = path.replace("{case_id}", "P-0").replace("{name}", "frame.jpg")
            response = client.request(method.upper(), url, json={})
            assert response.status_code == 401, f"{method} {path} answered {response.status_code} without a user"
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 15


def test_pages_without_a_user_go_to_login(client):
    for page in ("/", "/cases/P-0", "/cameras", "/users"):
        response = client.get(page, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={quote(page, safe='')}"


def test_login_checks_the_password_and_tokens_expire(street_var):
    with running_app(street_var, session_ttl_s=1.0) as client:
        assert client.post("/api/login", json={"name": "officer1", "password": "wrong-password"}).status_code == 401
        assert client.post("/api/login", json={"name": "nobody", "password": PASSWORD}).status_code == 401
        assert client.get("/api/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        headers = login(client, "officer1")
        me = client.get("/api/me", headers=headers)
        assert me.json() == {"name": "officer1", "role": "officer", "role_label": "执法队员"}
        time.sleep(1.1)
        assert client.get("/api/me", headers=headers).status_code == 401


def test_passwords_are_stored_as_argon2id_and_logout_ends_the_token(client):
    store = client.app.state.review.store
    _, stored = store.accounts.password_hash("officer1")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    headers = login(client, "officer1")
    assert client.post("/api/logout", headers=headers).status_code == 204
    assert client.get("/api/me", headers=headers).status_code == 401


def test_the_api_schema_is_for_supervisors_and_admins_and_no_cdn_docs_are_served(client):
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers=login(client, "officer1")).status_code == 403
    for name in ("chief", "root"):
        schema = client.get("/openapi.json", headers=login(client, name))
        assert schema.status_code == 200 and "/api/cases" in schema.json()["paths"]
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(page).status_code == 404, f"{page} is still served"
    policy = client.get("/login").headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'self'" in policy


def _login_trail(client) -> list[tuple[str, str, dict]]:
    return [(entry.actor, entry.action, entry.detail) for entry in client.app.state.review.store.audit.entries()
            if entry.action in ("login_failed", "login_refused")]


def test_five_failed_logins_lock_the_account_for_15_minutes_and_are_audited(client):
    wrong = {"name": "officer1", "password": "wrong-password"}
    answers = [client.post("/api/login", json=wrong) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 401, 429]
    locked = client.post("/api/login", json={"name": "officer1", "password": PASSWORD})  # the right one, too late
    assert locked.status_code == 429 and locked.json()["detail"] == "该账号登录失败次数过多，已锁定，请 15 分钟后再试"
    assert 890 <= int(locked.headers["retry-after"]) <= 900
    page = client.post("/login", data={"name": "officer1", "password": PASSWORD}, follow_redirects=False)
    assert page.status_code == 429 and "已锁定" in page.text and page.headers["retry-after"]
    login(client, "officer2")  # the lock is officer1's alone
    assert client.post("/api/login", json={"name": "no.such.user", "password": PASSWORD}).status_code == 401
    failed = {"name": "officer1", "address": "testclient", "locked": None}
    refused = {"name": "officer1", "address": "testclient", "locked": "account"}
    assert _login_trail(client) == [
        *[("anonymous", "login_failed", failed)] * 4,
        ("anonymous", "login_failed", {**failed, "locked": "account"}),
        ("anonymous", "login_refused", refused),  # once per lockout: the page's try adds none
        ("anonymous", "login_failed", {"name": None, "address": "testclient", "locked": None}),
    ]


def test_an_address_with_twenty_failures_is_refused_for_every_account(client):
    for attempt in range(ADDRESS_LIMIT.failures - 1):
        answer = client.post("/api/login", json={"name": f"guess{attempt}", "password": "wrong-password"})
        assert answer.status_code == 401, f"attempt {attempt}: {answer.status_code}"
    last = client.post("/api/login", json={"name": "officer1", "password": "wrong-password"})
    assert last.status_code == 429 and last.json()["detail"] == "此地址登录失败次数过多，请 15 分钟后再试"
    refused = client.post("/api/login", json={"name": "officer2", "password": PASSWORD})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert _login_trail(client)[-1] == ("anonymous", "login_refused",
                                        {"name": "officer2", "address": "testclient", "locked": "address"})


def test_lockouts_end_and_a_good_login_clears_only_its_account():
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(ACCOUNT_LIMIT.failures - 1):
        assert throttle.record_failure("officer1", "10.0.0.1") is None
    throttle.record_success("officer1")
    assert throttle.record_failure("officer1", "10.0.0.1") is None  # counting starts again after a success
    now[0] += ACCOUNT_LIMIT.window_s + 1  # failures older than the window no longer count
    for _ in range(ACCOUNT_LIMIT.failures - 1):
        assert throttle.record_failure("officer1", "10.0.0.2") is None
    lockout = throttle.record_failure("officer1", "10.0.0.3")
    assert lockout is not None and lockout.kind == "account" and lockout.retry_after_s == ACCOUNT_LIMIT.lockout_s
    now[0] += ACCOUNT_LIMIT.lockout_s - 60
    assert throttle.refusal("officer1", "10.0.0.4").retry_after_s == 60
    now[0] += 60
    assert throttle.refusal("officer1", "10.0.0.4") is None


class _SlowHasher:
    """Takes a while per password and says every one is right, counting how many run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = self.most_at_once = 0

    def verify(self, stored: str, password: str) -> bool:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.1)
        with self._lock:
            self.running -= 1
        return True

    def check_needs_rehash(self, stored: str) -> bool:
        return False


def test_password_checks_run_a_few_at_a_time_and_a_login_kept_waiting_gets_503(client, monkeypatch):
    hasher = _SlowHasher()
    monkeypatch.setattr(auth, "_hasher", hasher)
    review = client.app.state.review
    with ThreadPoolExecutor(max_workers=16) as pool:
        users = list(pool.map(lambda _: auth.check_password(review, "officer1", "any-password"), range(16)))
    assert all(user is not None and user.name == "officer1" for user in users)
    assert hasher.most_at_once <= auth.MAX_CONCURRENT_HASHES, f"{hasher.most_at_once} hashes ran at once"
    monkeypatch.setattr(auth, "HASH_WAIT_S", 0.1)
    for _ in range(auth.MAX_CONCURRENT_HASHES):
        auth._hash_slots.acquire()
    try:
        busy = client.post("/api/login", json={"name": "officer1", "password": PASSWORD})
    finally:
        for _ in range(auth.MAX_CONCURRENT_HASHES):
            auth._hash_slots.release()
    assert busy.status_code == 503 and busy.json()["detail"] == "登录的人太多，请稍后再试"
    assert busy.headers["retry-after"] == "5"


def test_request_bodies_over_1_mib_are_refused_with_413(client):
    too_big = b" " * (MAX_BODY_BYTES + 1)
    declared = client.post("/api/login", content=too_big, headers={"content-type": "application/json"})
    assert declared.status_code == 413, declared.status_code
    assert declared.headers["x-content-type-options"] == "nosniff"
    chunked = client.post("/api/login", content=iter([too_big]), headers={"content-type": "application/json"})
    assert chunked.status_code == 413, chunked.status_code
    padded = b'{"name": "officer1", "password": "%s"}' % PASSWORD.encode() + b" " * (MAX_BODY_BYTES - 100)
    assert client.post("/api/login", content=padded, headers={"content-type": "application/json"}).status_code == 200
    assert _login_trail(client) == []


def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit():
    chunk, chunks = b"x" * (64 * 1024), 64  # 4 MiB in all
    reads, reached_app, sent = [], [], []

    async def receive():
        reads.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(reads) < chunks}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        reached_app.append(scope)

    asyncio.run(BodyLimit(app)({"type": "http", "headers": []}, receive, send))
    assert not reached_app, "the app was handed a 4 MiB body"
    assert sent[0]["status"] == 413
    assert sum(reads) <= MAX_BODY_BYTES + len(chunk)


ROLE_MATRIX = [
    # (method, path, body, {role: expected status})
    ("GET", "/api/cases", None, {"officer1": 200, "chief": 200, "root": 403}),
    ("GET", "/api/cases/{case}", None, {"officer1": 200, "chief": 200, "root": 403}),
    ("GET", "/api/cases/{case}/bundle", None, {"officer1": 200, "chief": 200, "root": 403}),
    ("GET", "/api/cases/{case}/evidence/frame.jpg", None, {"officer1": 200, "chief": 200, "root": 403}),
    ("POST", "/api/cases/{case}/assign", {"assignee": "officer1"}, {"officer1": 403, "root": 403, "chief": 200}),
    ("POST", "/api/cases/{case}/confirm", {}, {"root": 403, "officer1": 200}),
    ("POST", "/api/cases/{case}/reopen", {"note": "复核"}, {"officer1": 403, "root": 403, "chief": 200}),
    ("GET", "/api/cameras", None, {"officer1": 403, "chief": 200, "root": 200}),
    ("GET", "/api/users", None, {"officer1": 403, "chief": 403, "root": 200}),
    ("POST", "/api/users", {"name": "newbie", "role": "officer", "password": "a-long-password"},
     {"officer1": 403, "chief": 403, "root": 201}),
    ("POST", "/api/users/officer2/revoke-sessions", None, {"officer1": 403, "chief": 403, "root": 200}),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROLE_MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in ROLE_MATRIX])
def test_roles(client, method, path, body, expected):
    case_id = all_cases(client, login(client, "chief"), violation="illegal_parking")[0]["case_id"]
    if path.endswith("/reopen"):  # only a decided case can be reopened
        client.post(f"/api/cases/{case_id}/confirm", headers=login(client, "officer1"), json={})
    for name, status in expected.items():  # in order: the allowed role last, so state changes come after refusals
        response = client.request(method, path.format(case=case_id), headers=login(client, name), json=body)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"


# -- account lifecycle --------------------------------------------------------------------------


def _entries(client, *actions: str) -> list:
    return [entry for entry in client.app.state.review.store.audit.entries() if entry.action in actions]


def test_a_disabled_account_is_cut_off_at_once_and_can_be_enabled_again(client):
    root = login(client, "root")
    tokens = [login(client, "officer1"), login(client, "officer1")]
    client.post("/login", data={"name": "officer1", "password": PASSWORD})  # and the page's cookie session
    assert client.get("/", follow_redirects=False).status_code == 200
    disabled = client.post("/api/users/officer1/disable", headers=root)
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    for headers in tokens:
        assert client.get("/api/me", headers=headers).status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
    client.cookies.clear()
    refused = client.post("/api/login", json={"name": "officer1", "password": PASSWORD})
    assert refused.status_code == 403 and refused.json()["detail"] == "该账号已停用，请联系管理员"
    assert client.post("/api/login", json={"name": "officer1", "password": "wrong-password"}).status_code == 401
    page = client.post("/login", data={"name": "officer1", "password": PASSWORD}, follow_redirects=False)
    assert page.status_code == 403 and "已停用" in page.text
    listed = {user["name"]: user for user in client.get("/api/users", headers=root).json()}
    assert listed["officer1"]["active"] is False and listed["officer2"]["active"] is True
    [entry] = _entries(client, "user_disable")
    assert entry.actor == "root" and entry.before == {"name": "officer1", "active": True}
    assert entry.after == {"name": "officer1", "active": False} and entry.detail == {"sessions_ended": 3}
    assert [e.detail["locked"] for e in _entries(client, "login_refused")] == ["disabled", "disabled"]

    assert client.post("/api/users/officer1/enable", headers=root).json()["active"] is True
    assert client.post("/api/users/officer1/enable", headers=root).status_code == 200  # a no-op, not audited
    assert [e.actor for e in _entries(client, "user_enable")] == ["root"]
    login(client, "officer1")
    assert client.post("/api/users/nobody/disable", headers=root).status_code == 404


def test_a_reset_password_ends_the_sessions_and_must_be_changed_at_the_next_login(client):
    root, old = login(client, "root"), login(client, "officer1")
    temporary = "temporary-pass-1"
    reset = client.post("/api/users/officer1/password", headers=root, json={"password": temporary})
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True
    assert client.get("/api/me", headers=old).status_code == 401
    assert client.post("/api/login", json={"name": "officer1", "password": PASSWORD}).status_code == 401
    answer = client.post("/api/login", json={"name": "officer1", "password": temporary}).json()
    assert answer["must_change_password"] is True
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    held = client.get("/api/cases", headers=headers)
    assert held.status_code == 403 and "POST /api/me/password" in held.json()["detail"]
    assert client.get("/api/me", headers=headers).status_code == 200
    client.post("/login", data={"name": "officer1", "password": temporary})  # the page sends them to change it
    assert client.get("/", follow_redirects=False).headers["location"] == "/password"
    page = client.get("/password").text
    assert "管理员重置了您的密码" in page
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    mistyped = client.post("/password", data={"current": temporary, "new": "a-new-password", "again": "a-new-passwort",
                                              "csrf_token": csrf})
    assert mistyped.status_code == 400 and "两次输入的新密码不一致" in mistyped.text
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303

    change = "/api/me/password"
    wrong = client.post(change, headers=headers, json={"current_password": "not-it-at-all", "new_password": "x" * 12})
    assert wrong.status_code == 400 and wrong.json()["detail"] == "当前密码错误"
    same = client.post(change, headers=headers, json={"current_password": temporary, "new_password": temporary})
    assert same.status_code == 400
    mine = "officer1-own-password"
    assert client.post(change, headers=headers, json={"current_password": temporary,
                                                      "new_password": mine}).status_code == 204
    assert client.get("/api/cases", headers=headers).status_code == 200  # the same session, now free
    again = client.post("/api/login", json={"name": "officer1", "password": mine})
    assert again.json()["must_change_password"] is False
    [entry] = _entries(client, "password_reset")
    assert entry.actor == "root"
    assert entry.detail == {"name": "officer1", "must_change_password": True, "sessions_ended": 1}
    assert [(e.actor, e.detail["name"]) for e in _entries(client, "password_change")] == [("officer1", "officer1")]


def test_a_role_change_applies_to_the_next_request_and_the_last_admin_stays(client):
    root, chief = login(client, "root"), login(client, "chief")
    assert client.get("/api/cameras", headers=chief).status_code == 200
    demoted = client.post("/api/users/chief/role", headers=root, json={"role": "officer"})
    assert demoted.status_code == 200 and demoted.json()["role"] == "officer"
    assert client.get("/api/cameras", headers=chief).status_code == 403  # the same token, its new role
    for refused in (client.post("/api/users/root/role", headers=root, json={"role": "supervisor"}),
                    client.post("/api/users/root/disable", headers=root)):
        assert refused.status_code == 409 and "last active admin" in refused.json()["detail"]
    assert client.post("/api/users/officer2/role", headers=root, json={"role": "admin"}).status_code == 200
    assert client.post("/api/users/root/disable", headers=root).status_code == 200
    assert client.get("/api/users", headers=root).status_code == 401
    officer2 = login(client, "officer2")
    assert client.post("/api/users/officer2/role", headers=officer2, json={"role": "officer"}).status_code == 409
    assert [(e.actor, e.before, e.after) for e in _entries(client, "role_change")] == [
        ("root", {"name": "chief", "role": "supervisor"}, {"name": "chief", "role": "officer"}),
        ("root", {"name": "officer2", "role": "officer"}, {"name": "officer2", "role": "admin"})]


def test_revoking_ends_every_session_of_the_account_and_no_other(client):
    root, officer2 = login(client, "root"), login(client, "officer2")
    tokens = [login(client, "officer1"), login(client, "officer1")]
    revoked = client.post("/api/users/officer1/revoke-sessions", headers=root)
    assert revoked.json() == {"name": "officer1", "sessions_ended": 2}
    assert [client.get("/api/me", headers=headers).status_code for headers in tokens] == [401, 401]
    assert client.get("/api/me", headers=officer2).status_code == 200
    login(client, "officer1")  # revoking is no disabling
    [entry] = _entries(client, "sessions_revoke")
    assert entry.actor == "root" and entry.detail == {"name": "officer1", "sessions_ended": 2}


@pytest.mark.realtime  # waits out a 2 s idle timeout on the wall clock
def test_a_session_ends_after_an_idle_spell_but_not_while_it_is_used(street_var):
    with running_app(street_var, session_idle_timeout_s=2.0) as client:
        headers = login(client, "officer1")
        for _ in range(2):  # 2.4 s after the login, 1.2 s after the last request: still in
            time.sleep(1.2)
            assert client.get("/api/me", headers=headers).status_code == 200
        time.sleep(2.3)
        assert client.get("/api/me", headers=headers).status_code == 401


# -- listing ------------------------------------------------------------------------------------


def test_list_is_newest_first_and_paginates_without_gaps(client):
    headers = login(client, "officer1")
    everything = all_cases(client, headers)
    assert len(everything) == len(client.app.state.review.store.cases.all_case_ids()) >= 5
    times = [datetime.fromisoformat(case["confirmed_wall"]) for case in everything]
    assert times == sorted(times, reverse=True)
    pages, seen = None, []
    page = 1
    while pages is None or page <= pages:
        body = client.get("/api/cases", headers=headers, params={"per_page": 2, "page": page}).json()
        assert body["total"] == len(everything) and body["per_page"] == 2
        pages = body["pages"]
        assert len(body["items"]) == (2 if page < pages else len(everything) - 2 * (pages - 1))
        seen.extend(case["case_id"] for case in body["items"])
        page += 1
    assert seen == [case["case_id"] for case in everything]
    beyond = client.get("/api/cases", headers=headers, params={"per_page": 2, "page": pages + 1}).json()
    assert beyond["items"] == [] and beyond["total"] == len(everything)
    for bad in ({"per_page": 0}, {"per_page": 101}, {"page": 0}, {"status": "maybe"}, {"since": "yesterday"}):
        assert client.get("/api/cases", headers=headers, params=bad).status_code == 422, bad


def test_since_and_until_take_iso_8601_only_and_name_the_parameter(client, monkeypatch):
    headers = login(client, "officer1")

    def refused(parameter: str, value: str) -> None:
        response = client.get("/api/cases", headers=headers, params={parameter: value})
        assert response.status_code == 422, (parameter, value)
        [error] = response.json()["detail"]  # FastAPI's validation shape, as the OpenAPI document says
        assert error["loc"] == ["query", parameter] and error["msg"]

    refused("since", "1700000000")  # pydantic alone would read these as Unix times
    refused("until", "1700000000.5")
    assert client.get("/api/cases", headers=headers, params={"since": "2026-03-02"}).status_code == 200

    def no_unix_time(moment, zone):
        raise OverflowError

    monkeypatch.setattr("pipeline.review.routers.cases.read_local", no_unix_time)  # as read_local may answer
    refused("until", "2026-03-02T08:00")


def test_filters_match_what_they_say(client):
    headers = login(client, "officer1")
    everything = all_cases(client, headers)
    for field, param in (("violation", "violation"), ("camera_id", "camera"), ("zone_id", "zone")):
        for value in {case[field] for case in everything} - {""}:  # a fault case has no zone
            found = all_cases(client, headers, **{param: value})
            assert [c["case_id"] for c in found] == [c["case_id"] for c in everything if c[field] == value]
    assert {case["violation"] for case in everything} >= {"illegal_parking", "stall_encroachment", "camera_fault"}

    target = everything[1]["case_id"]
    client.post(f"/api/cases/{target}/escalate", headers=headers, json={"note": "需要联合执法"})
    assert [c["case_id"] for c in all_cases(client, headers, status="escalated")] == [target]
    assert target not in {c["case_id"] for c in all_cases(client, headers, status="new")}

    middle = datetime.fromisoformat(everything[len(everything) // 2]["confirmed_wall"])
    since = all_cases(client, headers, since=middle.isoformat())
    until = all_cases(client, headers, until=middle.isoformat())
    assert [c["case_id"] for c in since] == [c["case_id"] for c in everything
                                             if datetime.fromisoformat(c["confirmed_wall"]) >= middle]
    assert {c["case_id"] for c in since}.isdisjoint(c["case_id"] for c in until)
    assert len(since) + len(until) == len(everything)
    # An offset-less time is the district's clock (UTC+8), as an officer types it.
    assert middle.utcoffset().total_seconds() == 8 * 3600
    local = middle.replace(tzinfo=None).isoformat()
    assert all_cases(client, headers, since=local) == since

    assert len(all_cases(client, headers, q="双山大街")) == len(everything)  # the address
    assert len(all_cases(client, headers, q="370181001001999")) == len(everything)  # the grid code
    assert [c["case_id"] for c in all_cases(client, headers, q=target[2:12].upper())] == [target]
    assert all_cases(client, headers, q="解放路") == []
    assert all_cases(client, headers, q="%") == []  # LIKE wildcards are text here


ZONES = ("Asia/Shanghai", "Europe/London")  # eight hours apart in March: no summer time in either yet


@pytest.mark.parametrize("zone", ZONES)
def test_the_display_time_zone_is_the_clock_of_times_shown_and_typed(street_var, zone):
    with running_app(street_var, display_timezone=zone) as client:
        headers = login(client, "officer1")
        everything = all_cases(client, headers)
        newest = everything[0]
        confirmed = datetime.fromisoformat(newest["confirmed_wall"])
        page = client.get(f"/cases/{newest['case_id']}", headers=headers).text
        for shown_in in ZONES:
            wall_clock = confirmed.astimezone(ZoneInfo(shown_in)).strftime("%Y-%m-%d %H:%M:%S")
            assert (wall_clock in page) == (shown_in == zone), (shown_in, wall_clock)
        # Read on any other clock, this offset-less time would be hours off and keep all cases or none.
        typed = confirmed.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat()
        older = [c["case_id"] for c in everything if datetime.fromisoformat(c["confirmed_wall"]) < confirmed]
        assert older and [c["case_id"] for c in all_cases(client, headers, until=typed)] == older


def test_the_display_time_zone_must_be_an_iana_name():
    assert ReviewSettings().display_timezone == ZoneInfo("Asia/Shanghai")
    for not_a_zone in ("UTC+8", "Shanghai", "../../etc/passwd"):
        with pytest.raises(ValidationError, match="invalid timezone"):
            ReviewSettings(display_timezone=not_a_zone)


# -- decisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "body", "status"), [
    ("confirm", {"note": "现场核实"}, "confirmed"),
    ("reject", {"reason": "outside_zone", "note": ""}, "rejected"),
    ("escalate", {"note": "需要联合执法"}, "escalated"),
])
def test_each_decision_changes_state_once_with_an_audit_entry(client, action, body, status):
    headers = login(client, "officer1")
    case_id = all_cases(client, headers, status="new")[0]["case_id"]
    before = audit_of(client, headers, case_id)
    response = client.post(f"/api/cases/{case_id}/{action}", headers=headers, json=body)
    assert response.status_code == 200, response.text
    case = response.json()
    assert case["status"] == status and case["decision"]["decided_by"] == "officer1"
    entries = audit_of(client, headers, case_id)
    assert len(entries) == len(before) + 1
    entry = entries[-1]
    assert entry["actor"] == "officer1" and entry["action"] == action and entry["case_id"] == case_id
    assert entry["before"]["status"] == "new" and entry["after"]["status"] == status
    assert entry["seq"] > before[-1]["seq"]
    again = client.post(f"/api/cases/{case_id}/{action}", headers=login(client, "officer2"), json=body)
    assert again.status_code == 409
    assert len(audit_of(client, headers, case_id)) == len(entries)


def test_rejection_reasons_come_from_the_fixed_list(client):
    headers = login(client, "officer1")
    case_id = all_cases(client, headers, status="new")[0]["case_id"]
    assert client.post(f"/api/cases/{case_id}/reject", headers=headers, json={"reason": "bored"}).status_code == 422
    other = client.post(f"/api/cases/{case_id}/reject", headers=headers, json={"reason": "other", "note": " "})
    assert other.status_code == 400 and "other" in other.json()["detail"]  # a business rule: 400, not 422
    assert client.get(f"/api/cases/{case_id}", headers=headers).json()["status"] == "new"
    done = client.post(f"/api/cases/{case_id}/reject", headers=headers, json={"reason": "other", "note": "施工围挡"})
    decision = done.json()["decision"]
    assert decision["reject_reason"] == "other" and decision["reject_reason_label"] == "其他"
    assert decision["note"] == "施工围挡"


def test_duplicate_must_name_an_existing_original(client):
    headers = login(client, "officer1")
    first, second, third = (c["case_id"] for c in all_cases(client, headers, status="new")[:3])
    for target, why in (("P-doesnotexist", "没有案件"), (first, "自身")):
        response = client.post(f"/api/cases/{first}/duplicate", headers=headers, json={"duplicate_of": target})
        assert response.status_code == 400 and why in response.json()["detail"]
    assert client.get(f"/api/cases/{first}", headers=headers).json()["status"] == "new"
    marked = client.post(f"/api/cases/{first}/duplicate", headers=headers, json={"duplicate_of": second})
    assert marked.status_code == 200
    assert marked.json()["status"] == "duplicate" and marked.json()["decision"]["duplicate_of"] == second
    assert audit_of(client, headers, first)[-1]["after"]["duplicate_of"] == second
    chained = client.post(f"/api/cases/{third}/duplicate", headers=headers, json={"duplicate_of": first})
    assert chained.status_code == 400 and second in chained.json()["detail"]


def test_supervisor_reopens_and_assignment_binds_officers(client):
    chief, officer1, officer2 = (login(client, name) for name in ("chief", "officer1", "officer2"))
    case_id = all_cases(client, chief, status="new")[0]["case_id"]
    assigned = client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "officer1"})
    assert assigned.json()["assignee"] == "officer1"
    assert client.post(f"/api/cases/{case_id}/assign", headers=chief, json={"assignee": "root"}).status_code == 400
    assert [c["case_id"] for c in all_cases(client, officer1, assignee="officer1")] == [case_id]
    refused = client.post(f"/api/cases/{case_id}/confirm", headers=officer2, json={})
    assert refused.status_code == 403 and "officer1" in refused.json()["detail"]
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer1, json={}).status_code == 200
    assert client.post(f"/api/cases/{case_id}/reopen", headers=chief, json={"note": ""}).status_code == 422
    assert client.post(f"/api/cases/{case_id}/reopen", headers=chief, json={"note": " "}).status_code == 400
    reopened = client.post(f"/api/cases/{case_id}/reopen", headers=chief, json={"note": "车主有停车许可，复核"})
    assert reopened.status_code == 200 and reopened.json()["status"] == "new"
    assert reopened.json()["decision"]["decided_by"] is None
    entry = audit_of(client, chief, case_id)[-1]
    assert entry["action"] == "reopen" and entry["actor"] == "chief"
    assert entry["before"]["status"] == "confirmed" and entry["before"]["decided_by"] == "officer1"
    assert entry["after"]["status"] == "new" and entry["detail"]["note"] == "车主有停车许可，复核"
    assert client.post(f"/api/cases/{case_id}/reopen", headers=chief, json={"note": "again"}).status_code == 409


def test_unknown_case_is_404(client):
    headers = login(client, "chief")
    for method, path in (("GET", "/api/cases/P-nope"), ("POST", "/api/cases/P-nope/confirm"),
                         ("GET", "/api/cases/P-nope/bundle"), ("GET", "/api/cases/P-nope/evidence/frame.jpg")):
        assert client.request(method, path, headers=headers, json={}).status_code == 404, path


# -- evidence -----------------------------------------------------------------------------------


def test_case_detail_lists_evidence_notes_and_place(client):
    headers = login(client, "officer1")
    cases = all_cases(client, headers)
    parking = next(c for c in cases if c["violation"] == "illegal_parking")
    detail = client.get(f"/api/cases/{parking['case_id']}", headers=headers).json()
    assert {e["name"] for e in detail["evidence"]} == {"frame.jpg", "annotated.jpg", "crop.jpg", "first_seen.jpg",
                                                      "clip.mp4", "metadata.json"}
    assert detail["violation_label"] == "机动车乱停放" and detail["status_label"] == "待审核"
    assert detail["location"]["grid_code"] == "370181001001999" and detail["location"]["lat"] == pytest.approx(36.7001)
    assert detail["audit"][0]["action"] == "case_received"
    fault = client.get(f"/api/cases/{FAULT_CASE}", headers=headers).json()
    assert fault["violation_label"] == "故障报警"
    assert {e["name"] for e in fault["evidence"]} == {"last_frame.jpg", "metadata.json"}
    assert [note["kind"] for note in fault["notes"]] == ["camera_down", "camera_recovered"]
    page = client.get(f"/cases/{FAULT_CASE}", headers=headers).text  # what failed, in the officers' words
    assert "摄像头无画面" in page and "没有画面（离线：connection refused）" in page and "摄像头已恢复" in page


def test_evidence_is_served_by_name_checked_and_audited(client, street_var):
    headers = login(client, "officer1")
    case_id = all_cases(client, headers, violation="illegal_parking")[0]["case_id"]
    detail = client.get(f"/api/cases/{case_id}", headers=headers).json()
    clip = next(e for e in detail["evidence"] if e["name"] == "clip.mp4")
    response = client.get(clip["url"], headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(response.content).hexdigest() == clip["sha256"]
    assert response.headers["cache-control"] == "private, no-store"
    entry = audit_of(client, headers, case_id)[-1]
    assert entry["action"] == "evidence_view" and entry["actor"] == "officer1"
    assert entry["detail"]["name"] == "clip.mp4" and entry["detail"]["intact"] is True
    assert entry["detail"]["key"].endswith(f"/{case_id}/clip.mp4")


def test_evidence_route_refuses_other_cases_keys_and_traversal(client):
    headers = login(client, "officer1")
    mine, other = (c["case_id"] for c in all_cases(client, headers, violation="illegal_parking")[:2])
    other_key = client.get(f"/api/cases/{other}", headers=headers).json()["evidence"][0]
    other_full_key = client.app.state.review.store.cases.get(other).record.evidence[other_key["name"]].key
    attempts = [
        f"/api/cases/{mine}/evidence/{quote(other_full_key, safe='')}",
        f"/api/cases/{mine}/evidence/{quote('../' + other + '/frame.jpg', safe='')}",
        f"/api/cases/{mine}/evidence/..%2F..%2F..%2Fqueue%2Fcases.sqlite3",
        f"/api/cases/{mine}/evidence/%2e%2e",
        f"/api/cases/{mine}/evidence/.metadata.json",
        f"/api/cases/{mine}/evidence/cases.sqlite3",
        f"/api/cases/{quote('../' + other, safe='')}/evidence/frame.jpg",
        f"/api/cases/{mine}/evidence/..\\..\\etc\\passwd",
    ]
    for url in attempts:
        response = client.get(url, headers=headers)
        assert response.status_code in (404, 422), f"{url} answered {response.status_code}"
        assert response.headers["content-type"].startswith("application/json")
    assert not [e for e in audit_of(client, headers, mine) if e["action"] == "evidence_view"]


def test_s3_evidence_redirects_to_a_short_lived_presigned_url(street_var, s3_env):
    source = LocalEvidenceStore(street_var / "evidence")
    bucket = open_evidence_store(None, s3_env)
    for key in source.keys(prefix=""):
        bucket.put(key, source.get(key), "video/mp4" if key.endswith(".mp4") else "image/jpeg")
    with running_app(street_var, evidence_url=None, environ=s3_env, evidence_url_expiry_s=120) as client:
        headers = login(client, "officer1")
        case_id = all_cases(client, headers, violation="illegal_parking")[0]["case_id"]
        item = client.app.state.review.store.cases.get(case_id).record.evidence["crop.jpg"]
        response = client.get(f"/api/cases/{case_id}/evidence/crop.jpg", headers=headers, follow_redirects=False)
        assert response.status_code == 307
        location = response.headers["location"]
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(s3_env["S3_ENDPOINT"]) and query["X-Amz-Expires"] == ["120"]
        assert "X-Amz-Signature" in query and s3_env["S3_SECRET_KEY"] not in location
        with urllib.request.urlopen(location, timeout=10) as fetched:
            assert hashlib.sha256(fetched.read()).hexdigest() == item.sha256
        entry = audit_of(client, headers, case_id)[-1]
        assert entry["action"] == "evidence_view" and entry["detail"]["via"] == "presigned"
        # The page lets pictures come from the object store, and only from there.
        page = client.get(f"/cases/{case_id}", headers=headers)
        assert f"img-src 'self' {s3_env['S3_ENDPOINT']}" in page.headers["content-security-policy"]


# -- bundle -------------------------------------------------------------------------------------


def test_bundle_holds_evidence_metadata_audit_and_checksums(client):
    headers = login(client, "officer2")
    case_id = all_cases(client, headers, violation="illegal_parking")[0]["case_id"]
    client.post(f"/api/cases/{case_id}/confirm", headers=headers, json={"note": "现场核实"})
    response = client.get(f"/api/cases/{case_id}/bundle", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert f"{case_id}-bundle.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    files = {name.removeprefix(f"{case_id}/"): archive.read(name) for name in archive.namelist()}
    record = client.app.state.review.store.cases.get(case_id).record
    assert set(files) == {f"evidence/{name}" for name in record.evidence} | {
        "case.json", "audit.jsonl", "signed_head.json", "audit-public-key.pem", "manifest.json", "SHA256SUMS"}
    for name, item in record.evidence.items():
        assert hashlib.sha256(files[f"evidence/{name}"]).hexdigest() == item.sha256
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(files) - {"SHA256SUMS"}
    for path, digest in sums.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, path
    metadata = json.loads(files["evidence/metadata.json"])
    assert metadata["case_id"] == case_id
    case = json.loads(files["case.json"])
    assert case["review"]["status"] == "confirmed" and case["record"]["case_id"] == case_id
    entries = [json.loads(line) for line in files["audit.jsonl"].decode().splitlines()]
    assert entries[0]["action"] == "case_received"
    assert entries[-1]["action"] == "bundle_export" and entries[-1]["actor"] == "officer2"
    assert "confirm" in [e["action"] for e in entries]
    manifest = json.loads(files["manifest.json"])
    assert manifest["audit_head"]["sha256"] == entries[-1]["sha256"]
    assert all(check["intact"] for check in manifest["evidence"])
    assert json.loads(files["signed_head.json"])["sha256"] == entries[-1]["sha256"]


def test_tampered_evidence_is_shown_blocks_decisions_until_acknowledged_and_is_marked_in_the_bundle(
        client, street_var):
    officer, chief = login(client, "officer1"), login(client, "chief")
    case_id = all_cases(client, officer, violation="illegal_parking")[0]["case_id"]
    record = client.app.state.review.store.cases.get(case_id).record
    annotated = street_var / "evidence" / record.evidence["annotated.jpg"].key
    annotated.write_bytes((street_var / "evidence" / record.evidence["frame.jpg"].key).read_bytes())  # swapped
    assert client.get(f"/api/cases/{case_id}/evidence/annotated.jpg", headers=officer).headers[
        "x-evidence-intact"] == "false"

    page = client.get(f"/cases/{case_id}", headers=officer)
    assert page.status_code == 200 and 'id="tamper-warning"' in page.text
    assert "证据文件校验失败：</strong>annotated.jpg（sha256 与案件记录不符）" in page.text
    tampered = client.get(f"/api/cases/{case_id}", headers=officer).json()["tampered_evidence"]
    assert tampered == [{"name": "annotated.jpg", "recorded_sha256": record.evidence["annotated.jpg"].sha256,
                         "actual_sha256": hashlib.sha256(annotated.read_bytes()).hexdigest(), "acknowledged": False}]
    for action, body in (("confirm", {}), ("reject", {"reason": "detector_error"})):
        refused = client.post(f"/api/cases/{case_id}/{action}", headers=officer, json=body)
        assert refused.status_code == 409, refused.text
        assert "annotated.jpg" in refused.json()["detail"] and "acknowledge-tampering" in refused.json()["detail"]
    assert client.get(f"/api/cases/{case_id}", headers=officer).json()["status"] == "new"

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/cases/{case_id}/bundle", headers=officer).content))
    files = {name.removeprefix(f"{case_id}/"): archive.read(name) for name in archive.namelist()}
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert sums["evidence/annotated.jpg"] == record.evidence["annotated.jpg"].sha256  # the record's, not the bytes'
    assert hashlib.sha256(files["evidence/annotated.jpg"]).hexdigest() != sums["evidence/annotated.jpg"]
    assert "evidence/annotated.jpg: recorded sha256" in files["TAMPERED.txt"].decode()
    assert "crop.jpg" not in files["TAMPERED.txt"].decode()
    manifest = json.loads(files["manifest.json"])
    assert [check["name"] for check in manifest["evidence"] if not check["intact"]] == ["annotated.jpg"]

    assert client.post(f"/api/cases/{case_id}/acknowledge-tampering", headers=officer, json={}).status_code == 403
    acknowledged = client.post(f"/api/cases/{case_id}/acknowledge-tampering", headers=chief,
                               json={"note": "已联系设备厂家核实"})
    assert acknowledged.status_code == 200 and acknowledged.json()["tampered_evidence"][0]["acknowledged"]
    entry = audit_of(client, officer, case_id)[-1]
    assert (entry["action"], entry["actor"]) == ("evidence_tamper_ack", "chief")
    assert entry["detail"]["note"] == "已联系设备厂家核实"
    assert entry["detail"]["files"] == [{key: value for key, value in tampered[0].items() if key != "acknowledged"}]
    assert client.post(f"/api/cases/{case_id}/acknowledge-tampering", headers=chief, json={}).status_code == 409

    # Bytes changed after the acknowledgement are not covered by it.
    (street_var / "evidence" / record.evidence["crop.jpg"].key).write_bytes(b"not the crop")
    refused = client.post(f"/api/cases/{case_id}/confirm", headers=officer, json={})
    assert refused.status_code == 409 and "证据文件 crop.jpg 缺失或" in refused.json()["detail"]
    assert client.post(f"/api/cases/{case_id}/acknowledge-tampering", headers=chief, json={}).status_code == 200
    assert client.post(f"/api/cases/{case_id}/confirm", headers=officer, json={}).status_code == 200


# -- CSRF, cameras, intake ----------------------------------------------------------------------


def test_cookie_sessions_need_the_csrf_token_and_same_origin(client):
    login_page = client.post("/login", data={"name": "officer1", "password": PASSWORD, "next": "/"},
                             follow_redirects=False)
    assert login_page.status_code == 303
    cookie = login_page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    case_id = all_cases(client, login(client, "officer1"), status="new")[0]["case_id"]
    page = client.get(f"/cases/{case_id}")
    token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    url = f"/api/cases/{case_id}/confirm"
    assert client.post(url, json={}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}).status_code == 403
    assert client.get(f"/api/cases/{case_id}").json()["status"] == "new"
    assert client.post(url, json={}, headers={"X-CSRF-Token": token}).status_code == 200
    assert client.post("/login", data={"name": "officer1", "password": PASSWORD},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403  # a forged logout
    logout = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_admin_adds_an_account_on_the_users_page(client):
    assert client.post("/login", data={"name": "root", "password": PASSWORD}, follow_redirects=False
                       ).headers["location"] == "/cameras"  # an admin reviews no cases
    page = client.get("/users")
    assert page.status_code == 200 and "系统管理员" in page.text
    token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    form = {"name": "zhao.liu", "role": "officer", "password": "a-long-password"}
    assert client.post("/users", data=form, follow_redirects=False).status_code == 403  # no CSRF token
    added = client.post("/users", data={**form, "csrf_token": token}, follow_redirects=False)
    assert added.status_code == 303
    assert client.post("/api/login", json={"name": "zhao.liu", "password": "a-long-password"}).status_code == 200
    again = client.post("/users", data={**form, "csrf_token": token})
    assert again.status_code == 422 and "exists already" in again.text
    assert client.get("/").url.path == "/cameras"


class _MetricsHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _worker_metrics() -> bytes:
    """What a worker's /metrics serves, from the patrol's own collector."""
    now = time.time()
    live = CameraReport("shuangshan-sample", "live", now - 60, Counters(900, 300), Rates(
        received_fps=15.0, analysed_fps=5.0, decode_ms=2.0, inference_ms=20.0),
        0.05, now - 0.5, 1, 0, 0, 1, 0, None)
    offline = CameraReport("shuangshan-002", "offline", now - 600, Counters(), Rates(),
        None, now - 600, 4, 0, 0, 4, 0, "connection refused")
    registry = CollectorRegistry()
    registry.register(PatrolCollector(lambda: PatrolReport([live, offline], 3, 0, None)))
    return generate_latest(registry)


def test_camera_list_shows_live_state_and_survives_a_dead_worker(street_var):
    handler = type("Handler", (_MetricsHandler,), {"body": _worker_metrics()})
    worker = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    dead = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    dead_url = f"http://127.0.0.1:{dead.server_address[1]}/metrics"
    dead.server_close()  # nothing listens there any more
    try:
        urls = (f"http://127.0.0.1:{worker.server_address[1]}/metrics", dead_url)
        with running_app(street_var, metrics_urls=urls, metrics_timeout_s=1.0) as client:
            chief = login(client, "chief")
            response = client.get("/api/cameras", headers=chief)
            assert response.status_code == 200
            board = response.json()
            cameras = {camera["camera_id"]: camera for camera in board["cameras"]}
            sample = cameras["shuangshan-sample"]
            assert sample["state"] == "live" and sample["state_label"] == "在线" and sample["health"] == "ok"
            assert sample["received_fps"] == 15.0 and sample["last_frame_age_s"] < 10
            assert sample["address"] == "章丘区双山大街 (示例)"  # from streams/sample-street.yaml
            assert cameras["shuangshan-002"]["state"] == "offline" and cameras["shuangshan-002"]["health"] == "down"
            assert [(w["url"], w["ok"]) for w in board["workers"]] == [(urls[0], True), (dead_url, False)]
            page = client.get("/cameras", headers=chief)
            assert page.status_code == 200 and "在线" in page.text and "无响应" in page.text
    finally:
        worker.shutdown()
        worker.server_close()


def test_cameras_of_an_unreachable_worker_are_unknown(street_var):
    with running_app(street_var, metrics_urls=("http://127.0.0.1:9/metrics",), metrics_timeout_s=0.5) as client:
        board = client.get("/api/cameras", headers=login(client, "root")).json()
        assert [(c["camera_id"], c["state"], c["health"]) for c in board["cameras"]] == [
            ("shuangshan-sample", "unknown", "unknown")]
        assert board["workers"][0]["ok"] is False


def test_intake_survives_an_unreachable_queue(street_var, redis_server, redis_url):
    source = SqliteCaseQueue(street_var / "queue" / "cases.sqlite3")
    redis_queue = RedisCaseQueue(redis_url)
    replayed = (street_var / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    records = [source.get(json.loads(line)["case_id"]) for line in replayed]
    assert redis_queue.publish(records[0])
    with running_app(street_var, queue_url=redis_url, intake_max_backoff_s=0.5, expect_cases=1) as client:
        store = client.app.state.review.store
        redis_server.stop()
        deadline = time.monotonic() + 15
        while client.app.state.review.intake.last_error is None:
            assert time.monotonic() < deadline, "intake never noticed the queue was gone"
            time.sleep(0.1)
        headers = login(client, "officer1")
        assert [c["case_id"] for c in all_cases(client, headers)] == [records[0].case_id]
        detail = client.get(f"/api/cases/{records[0].case_id}", headers=headers)
        assert detail.status_code == 200 and detail.json()["notes"] is None
        page = client.get("/", headers=headers)
        assert page.status_code == 200 and "案件队列暂时无法连接" in page.text
        redis_server.start()
        assert redis_queue.publish(records[1])
        deadline = time.monotonic() + 20
        while len(store.cases.all_case_ids()) < 2:
            assert time.monotonic() < deadline, "intake did not resume after the queue came back"
            time.sleep(0.1)
        assert client.app.state.review.intake.last_error is None
        assert redis_queue.pending_count() == 0  # taken and acknowledged
    redis_queue.close()
    source.close()


def test_intake_sets_a_malformed_record_aside_and_takes_the_rest_of_its_batch(tmp_path, caplog):
    var = tmp_path / "var"
    (var / "queue").mkdir(parents=True)
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    newer = {**make_record(1).to_dict(), "weather": "rain"}  # a newer worker's, during a rolling upgrade
    broken = {key: value for key, value in make_record(2).to_dict().items() if key != "confirmed_wall"}
    assert queue.publish(make_record(0))
    publish_raw(f"sqlite:///{var / 'queue' / 'cases.sqlite3'}", newer)
    publish_raw(f"sqlite:///{var / 'queue' / 'cases.sqlite3'}", broken)
    assert queue.publish(make_record(3))
    taken = [make_record(0).case_id, newer["case_id"], make_record(3).case_id]
    with caplog.at_level(logging.WARNING, "pipeline.review.intake"), running_app(var, expect_cases=3) as client:
        review = client.app.state.review
        assert sorted(review.store.cases.all_case_ids()) == taken
        assert review.store.cases.get(newer["case_id"]).record.to_dict() == newer  # the unknown key kept
        assert list(review.intake.set_aside) == [broken["case_id"]]
        assert "confirmed_wall missing" in review.intake.set_aside[broken["case_id"]]
        page = client.get("/", headers=login(client, "officer1"))
        assert page.status_code == 200
        assert "1 条案件记录无法读取" in page.text and broken["case_id"] in page.text
    assert any(broken["case_id"] in line and "confirmed_wall missing" in line for line in caplog.messages)
    assert queue.pending_count() == 1  # left in the queue, not acknowledged: a reader that can read it takes it
    queue.close()
