"""What tests/test_case_loop.py works with: a small street made in place (cases with real
evidence files on a SQLite queue, no replay), the API as each role uses it, and a frozen clock."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from queue_contract import make_record
from review_support import login, running_app

from pipeline.cli.main import main
from pipeline.evidence import LocalEvidenceStore
from pipeline.queue import SqliteCaseQueue
from pipeline.review import workflow
from pipeline.review.vocabulary import Status
from pipeline.types import CaseRecord

DISTRICT = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 12, 7, 9, 0, tzinfo=DISTRICT)
VIOLATIONS = ["illegal_parking"] * 10 + ["bin_overflow", "nonmotor_parking"]


def picture(kind: str, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, kind)
    return buffer.getvalue()


def tampered_png() -> bytes:
    """A PNG whose picture data was changed after its header: it starts right and does not decode."""
    data = picture("PNG")
    start = data.index(b"IDAT") + 8
    return data[:start] + bytes(byte ^ 0xFF for byte in data[start:start + 12]) + data[start + 12:]


def filed_case(evidence: LocalEvidenceStore, index: int, violation: str) -> CaseRecord:
    """A case as the patrol files one: its frame and metadata.json in the evidence store, their sha256s in it."""
    record = make_record(index)
    record = replace(record, case_id=f"cam-07-{violation}-{index:05d}", violation=violation)
    folder = f"2024-05-01/cam-07/{record.case_id}"
    frame = evidence.put(f"{folder}/frame.jpg", picture("JPEG", (index * 20 % 255, 90, 90)), "image/jpeg")
    metadata = json.dumps({"evidence": {"frame.jpg": {"key": frame.key, "sha256": frame.sha256}}}).encode()
    return replace(record, evidence={"frame.jpg": frame,
                                     "metadata.json": evidence.put(f"{folder}/metadata.json", metadata,
                                                                   "application/json")})


def small_street(var: Path) -> list[CaseRecord]:
    evidence = LocalEvidenceStore(var / "evidence")
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    try:
        records = [filed_case(evidence, index, violation) for index, violation in enumerate(VIOLATIONS)]
        for record in records:
            assert queue.publish(record)
    finally:
        queue.close()
    return records


class Api:
    """The review API as officer1, officer2, chief (supervisor) and root (admin) use it; each logs in once."""

    def __init__(self, client) -> None:
        self.client = client
        self._headers: dict[str, dict[str, str]] = {}

    def headers(self, user: str) -> dict[str, str]:
        if user not in self._headers:
            self._headers[user] = login(self.client, user)
        return self._headers[user]

    def post(self, user: str, path: str, expect: int | None = 200, **request):
        response = self.client.post(f"/api/cases/{path}", headers=self.headers(user), **request)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def case(self, case_id: str) -> dict:
        return self.client.get(f"/api/cases/{case_id}", headers=self.headers("chief")).json()

    def confirm(self, case_id: str) -> dict:
        return self.post("officer1", f"{case_id}/confirm", json={}).json()

    def file(self, case_id: str, **expect) -> dict:
        return self.post("officer1", f"{case_id}/file", json={"note": "依法立案"}, **expect).json()

    def dispatch(self, case_id: str, unit: str = "traffic-police", user: str = "chief", **body) -> dict:
        return self.post(user, f"{case_id}/dispatch", json={"unit": unit, **body}).json()

    def dispose(self, case_id: str, photos: list[tuple[str, bytes]], user: str = "officer1", expect: int = 200):
        return self.post(user, f"{case_id}/dispose", expect, data={"note": "车辆已拖离"},
                         files=[("photos", (name, data, "application/octet-stream")) for name, data in photos])

    def verify(self, case_id: str, accept: bool = True, note: str = "") -> dict:
        return self.post("chief", f"{case_id}/verify", json={"accept": accept, "note": note}).json()

    def close(self, case_id: str) -> dict:
        return self.post("chief", f"{case_id}/close", json={}).json()

    def through(self, case_id: str, status: Status) -> None:
        """Take a new case along the loop until it is in ``status``."""
        steps = [lambda: self.confirm(case_id), lambda: self.file(case_id), lambda: self.dispatch(case_id),
                 lambda: self.dispose(case_id, [("site.jpg", picture("JPEG"))]), lambda: self.verify(case_id),
                 lambda: self.close(case_id)]
        order = [Status.CONFIRMED, Status.FILED, Status.DISPATCHED, Status.DISPOSED, Status.VERIFIED, Status.CLOSED]
        for step in steps[:order.index(status) + 1]:
            step()


@contextmanager
def loop_api(var: Path) -> Iterator[Api]:
    records = small_street(var)
    with running_app(var, expect_cases=len(records)) as client:
        yield Api(client)


class FrozenClock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self.now = start
        monkeypatch.setattr(workflow, "clock", lambda: self.now.timestamp())

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def case_ids(api: Api, violation: str = "illegal_parking") -> list[str]:
    return sorted(case_id for case_id in api.client.app.state.review.store.cases.all_case_ids() if violation in case_id)


def patrol_verify(var: Path, capsys) -> tuple[int, str]:
    code = main(["verify", "--db", str(var / "review" / "review.sqlite3"), "--evidence", str(var / "evidence")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def utc(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).isoformat(timespec="milliseconds")
