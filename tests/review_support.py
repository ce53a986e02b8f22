"""What the review service's tests share: a street replayed once per session, a fresh copy of it
per test, accounts for each role, and an app whose intake has taken every queued case.

The cases are real: `patrol replay` of the sample street (the project's model, evidence renderer and
SQLite queue), plus one camera-fault case rendered by the real evidence renderer with a
``camera_recovered`` note, as the patrol files them.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import pytest
from fastapi.testclient import TestClient
from support import REPO, START_TIME, sample_replay_once

from pipeline.engine.faults import Recovered, camera_down_note, recovery_note
from pipeline.evidence import CameraInfo, EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.evidence.render import CameraFault
from pipeline.queue import SqliteCaseQueue
from pipeline.review.app import create_app
from pipeline.review.auth import hash_password
from pipeline.review.settings import ReviewSettings
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import AccountRole
from pipeline.types import Frame

STREAMS = REPO / "streams"
FAULT_CASE = "F-0123456789abcdef"
PASSWORD = "correct-horse-battery"  # every test account's password
ACCOUNTS = {"officer1": AccountRole.OFFICER, "officer2": AccountRole.OFFICER, "chief": AccountRole.SUPERVISOR,
            "root": AccountRole.ADMIN}

_replayed: dict[str, Path] = {}
_password_hash: list[str] = []


def replayed_street(tmp_path_factory) -> Path:
    """The pristine replay (queue + evidence), made once per test session: a copy of the run's
    replay of the sample plus a camera-fault case."""
    if "street" not in _replayed:
        out = tmp_path_factory.getbasetemp() / "street"
        shutil.copytree(sample_replay_once(tmp_path_factory).out, out)
        _add_camera_fault(out)
        _replayed["street"] = out
    return _replayed["street"]


def _add_camera_fault(out: Path) -> None:
    """A 故障报警 case as the patrol files one: last picture, fault metadata and its note, then a
    recovery note."""
    store = LocalEvidenceStore(out / "evidence")
    frame_key = next(key for key in store.keys(prefix="") if key.endswith("/frame.jpg"))
    picture = cv2.imread(str(store.root / frame_key))
    camera = CameraInfo("shuangshan-sample", "双山大街 样例路段 (synthetic)",
                        {"lat": 36.7001, "lon": 117.5412, "address": "章丘区双山大街 (示例)",
                         "grid_code": "370181001001999", "timezone": "Asia/Shanghai"})
    since = datetime.fromisoformat(START_TIME).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() + 400
    fault = CameraFault(case_id=FAULT_CASE, since_wall=since, filed_wall=since + 300, stream_s=150.0, state="offline",
                        reason="connection refused", last_frame=Frame("shuangshan-sample", 749, 149.8, since, picture))
    case = EvidenceRenderer(load_event_codes(), "test").render_camera_fault(
        fault, camera=camera, model={"name": "patrol-street", "sha256": "0" * 64})
    case.store_into(store)
    record = case.record
    queue = SqliteCaseQueue(out / "queue" / "cases.sqlite3")
    try:
        assert queue.publish(record)
        queue.add_note(camera_down_note(fault, "shuangshan-sample", ZoneInfo("Asia/Shanghai")))
        queue.add_note(recovery_note(Recovered(FAULT_CASE, since, since + 600), "shuangshan-sample",
                                     ZoneInfo("Asia/Shanghai")))
    finally:
        queue.close()


def copy_of_street(tmp_path_factory: pytest.TempPathFactory, var: Path) -> Path:
    """A private copy of the replayed street at ``var``: one test's decisions touch nobody else's."""
    shutil.copytree(replayed_street(tmp_path_factory), var)
    return var


def settings_for(var: Path, **overrides) -> ReviewSettings:
    return ReviewSettings(**{
        "db_path": var / "review" / "review.sqlite3",
        "queue_url": f"sqlite:///{var / 'queue' / 'cases.sqlite3'}",
        "evidence_url": str(var / "evidence"),
        "streams_dir": STREAMS,
        "consumer": "review-test",
        "intake_block_s": 0.2,
        **overrides,
    })


def add_accounts(db_path: Path) -> None:
    """The test accounts, hashed once per session (argon2 is slow on purpose)."""
    if not _password_hash:
        _password_hash.append(hash_password(PASSWORD))
    store = ReviewStore(db_path)
    try:
        existing = {user.name for user in store.accounts.users()}
        for name, role in ACCOUNTS.items():
            if name not in existing:
                store.accounts.add_user(name, role, _password_hash[0], actor="test-setup")
    finally:
        store.close()


def queued_case_count(var: Path) -> int:
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    try:
        return queue.count()
    finally:
        queue.close()


def wait_for_cases(store: ReviewStore, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(store.cases.all_case_ids()) < count:
        assert time.monotonic() < deadline, f"intake stored {len(store.cases.all_case_ids())} of {count} cases"
        time.sleep(0.05)


@contextmanager
def running_app(var: Path, *, environ=None, expect_cases: int | None = None, **overrides):
    """A TestClient on an app over ``var`` whose intake has taken every queued case (or ``expect_cases``)."""
    settings = settings_for(var, **overrides)
    add_accounts(settings.db_path)
    app = create_app(settings, **({"environ": environ} if environ is not None else {}))
    try:
        with TestClient(app) as client:
            wait_for_cases(app.state.review.store, queued_case_count(var) if expect_cases is None else expect_cases)
            yield client
    finally:
        app.state.review.close()


def login(client: TestClient, name: str) -> dict[str, str]:
    response = client.post("/api/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
