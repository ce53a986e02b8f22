"""The 处置流程 after confirmation (立案 → 派遣 → 处置 → 核查 → 结案), through the API as officers use it,
and its status changes reaching the city platform through `patrol forward --from-review`.

The street here is small and made in place (a dozen cases with real evidence files on a SQLite
queue), not the replayed sample: every test runs the real app with a TestClient, in seconds.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from loop_support import (
    DISTRICT,
    START,
    Api,
    FrozenClock,
    case_ids,
    filed_case,
    loop_api,
    patrol_verify,
    picture,
    tampered_png,
    utc,
)
from test_forward import QUICK, Answer, Platform

from pipeline.cli.main import main
from pipeline.evidence import LocalEvidenceStore
from pipeline.queue.forward import Endpoint, Tally
from pipeline.review import workflow
from pipeline.review.accounts import User
from pipeline.review.db import ReviewDatabase
from pipeline.review.errors import NotAllowed
from pipeline.review.outbox import Outbox, OutboxForwarder
from pipeline.review.photos import MAX_PHOTO_BYTES
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import STATUS_LABELS, AccountRole, Decision, Status
from pipeline.review.workflow import TRANSITIONS, WHAT_NEXT, Step, load_workflow_config
from pipeline.review.workflow_steps import WorkflowSteps


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with loop_api(tmp_path / "var") as api:
        yield api


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    return FrozenClock(monkeypatch, START)


# -- the happy path ------------------------------------------------------------------------------


def test_a_case_goes_through_every_state_each_step_one_audited_entry(api, clock, tmp_path, capsys):
    case_id, second = case_ids(api)[:2]
    jpeg, png = picture("JPEG"), picture("PNG", (20, 160, 20))

    assert api.confirm(case_id)["status"] == "confirmed"
    filed = api.file(case_id)
    assert (filed["status"], filed["status_label"]) == ("filed", "已立案")
    assert filed["case_number"] == filed["loop"]["case_number"] == "双山-20261207-0001"
    api.confirm(second)
    assert api.file(second)["case_number"] == "双山-20261207-0002"  # the day's sequence, given in the transaction

    dispatched = api.dispatch(case_id)
    loop = dispatched["loop"]
    assert (dispatched["status"], loop["unit"], loop["unit_name"]) == ("dispatched", "traffic-police", "章丘交警大队双山中队")
    assert loop["deadline"] == utc(START + timedelta(hours=2))  # illegal_parking: 2 h in the packaged table
    assert dispatched["overdue"] is False

    clock.advance(minutes=50)
    # A PNG sent under a .jpg name is a PNG: the kind is read from the bytes, never from the name.
    disposed = api.dispose(case_id, [("site-before.jpg", jpeg), ("site-after.jpg", png)]).json()
    photos = disposed["loop"]["photos"]
    assert [(p["name"], p["content_type"], p["sha256"]) for p in photos] == [
        ("disposal-1-1.jpg", "image/jpeg", hashlib.sha256(jpeg).hexdigest()),
        ("disposal-1-2.png", "image/png", hashlib.sha256(png).hexdigest())]
    served = api.client.get(photos[1]["url"], headers=api.headers("chief"))
    assert served.status_code == 200 and served.content == png

    assert api.verify(case_id, note="现场已恢复")["status"] == "verified"
    closed = api.close(case_id)
    assert (closed["status"], closed["status_label"]) == ("closed", "已结案")
    assert closed["loop"]["closed_at"] == utc(START + timedelta(minutes=50))

    changes = [(entry["action"], entry["before"]["status"], entry["after"]["status"]) for entry in closed["audit"]
               if entry["after"] and "status" in entry["after"] and entry["before"]]
    assert changes == [("confirm", "new", "confirmed"), ("file", "confirmed", "filed"),
                       ("dispatch", "filed", "dispatched"), ("dispose", "dispatched", "disposed"),
                       ("verify", "disposed", "verified"), ("close", "verified", "closed")]
    dispose_entry = next(entry for entry in closed["audit"] if entry["action"] == "dispose")
    assert [photo["sha256"] for photo in dispose_entry["detail"]["photos"]] == [p["sha256"] for p in photos]
    assert {entry["action_label"] for entry in closed["audit"]} >= {"立案", "派遣", "上报处置", "核查通过", "结案"}

    code, output = patrol_verify(tmp_path / "var", capsys)
    assert code == 0, output


def test_a_disposal_sent_back_is_dispatched_again_under_a_fresh_deadline_and_keeps_its_photos(api, clock):
    case_id = case_ids(api)[0]
    api.through(case_id, Status.DISPOSED)
    clock.advance(hours=1)

    assert api.post("chief", f"{case_id}/verify", 400, json={"accept": False, "note": " "}).json()["detail"] == (
        "核查退回须填写退回原因")
    again = api.verify(case_id, accept=False, note="占道物品未清理")
    assert again["status"] == "dispatched" and again["loop"]["disposed_at"] is None
    assert again["loop"]["deadline"] == utc(START + timedelta(hours=3))
    api.dispose(case_id, [("redo.jpg", picture("JPEG", (1, 2, 3)))])
    assert [photo["name"] for photo in api.case(case_id)["loop"]["photos"]] == ["disposal-1-1.jpg", "disposal-2-1.jpg"]


# -- illegal transitions -------------------------------------------------------------------------

CALLS = {
    Step.FILE: lambda api, case_id: api.post("officer1", f"{case_id}/file", None, json={}),
    Step.DISPATCH: lambda api, case_id: api.post("chief", f"{case_id}/dispatch", None, json={"unit": "sanitation"}),
    Step.DISPOSE: lambda api, case_id: api.dispose(case_id, [("site.jpg", picture("JPEG"))], expect=None),
    Step.VERIFY: lambda api, case_id: api.post("chief", f"{case_id}/verify", None, json={"accept": True}),
    Step.SEND_BACK: lambda api, case_id: api.post("chief", f"{case_id}/verify", None,
                                                  json={"accept": False, "note": "未处置到位"}),
    Step.CLOSE: lambda api, case_id: api.post("chief", f"{case_id}/close", None, json={}),
}
# Every step from every state it does not start from; /dispatch on a dispatched case is a re-dispatch
# (tested with the clock below).
ILLEGAL = [(step, status) for step, transition in TRANSITIONS.items() if step in CALLS for status in Status
           if status is not transition.source and not (step is Step.DISPATCH and status is Status.DISPATCHED)]


@pytest.fixture(scope="module")
def case_in(tmp_path_factory) -> Iterator[tuple[Api, dict[Status, str]]]:
    """One case in each state, on one app for the module: a refused step changes nothing."""
    with loop_api(tmp_path_factory.mktemp("states") / "var") as api:
        ids = iter(case_ids(api))
        cases = {status: next(ids) for status in Status}
        api.post("officer1", f"{cases[Status.REJECTED]}/reject", json={"reason": "detector_error"})
        api.post("officer1", f"{cases[Status.ESCALATED]}/escalate", json={})
        for status in (Status.CONFIRMED, Status.FILED, Status.DISPATCHED, Status.DISPOSED, Status.VERIFIED,
                       Status.CLOSED):
            api.through(cases[status], status)
        api.post("officer1", f"{cases[Status.DUPLICATE]}/duplicate", json={"duplicate_of": cases[Status.CONFIRMED]})
        yield api, cases


@pytest.mark.parametrize(("step", "status"), ILLEGAL, ids=[f"{step}-from-{status}" for step, status in ILLEGAL])
def test_a_step_the_state_does_not_allow_is_refused_409_saying_the_state_and_what_next(case_in, step, status):
    api, cases = case_in
    case_id = cases[status]
    entries = len(api.case(case_id)["audit"])

    refused = CALLS[step](api, case_id)

    assert refused.status_code == 409, refused.text
    label = TRANSITIONS[step].label
    assert refused.json() == {"detail": f"案件当前为「{STATUS_LABELS[status]}」，不能{label}：{WHAT_NEXT[status]}",
                              "code": "workflow_state"}
    after = api.case(case_id)
    assert after["status"] == status.value and len(after["audit"]) == entries


def test_the_refusal_reads_as_a_centre_would_say_it(case_in):
    api, cases = case_in
    refused = api.post("chief", f"{cases[Status.CONFIRMED]}/dispatch", 409, json={"unit": "sanitation"})
    assert refused.json()["detail"] == "案件当前为「已确认」，不能派遣：请先立案"
    reopened = api.post("chief", f"{cases[Status.FILED]}/reopen", 409, json={"note": "复核"})
    assert "已立案" in reopened.json()["detail"] and "不能重新打开" in reopened.json()["detail"]


# -- who may do what -----------------------------------------------------------------------------


def test_officers_file_and_report_disposal_supervisors_dispatch_verify_and_close(case_in):
    api, cases = case_in
    photo = [("site.jpg", picture("JPEG"))]
    assert api.post("officer1", f"{cases[Status.FILED]}/dispatch", 403, json={"unit": "sanitation"})
    assert api.dispose(cases[Status.DISPATCHED], photo, user="chief", expect=403)  # never the one who verifies
    assert api.post("officer2", f"{cases[Status.DISPOSED]}/verify", 403, json={"accept": True})
    assert api.post("officer2", f"{cases[Status.VERIFIED]}/close", 403, json={})
    assert api.post("root", f"{cases[Status.CONFIRMED]}/file", 403, json={})  # an admin decides no case
    assert api.case(cases[Status.DISPATCHED])["status"] == "dispatched"

    units = api.client.get("/api/workflow/units", headers=api.headers("officer2"))
    assert units.status_code == 200 and units.json()["deadline_hours"]["bin_overflow"] == 24
    assert api.client.get("/api/workflow/units", headers=api.headers("root")).status_code == 403


def test_the_page_offers_each_role_its_next_step(case_in):
    api, cases = case_in

    def page(user: str, status: Status) -> str:
        response = api.client.get(f"/cases/{cases[status]}", headers=api.headers(user))
        assert response.status_code == 200
        return response.text

    assert 'id="step-file"' in page("officer1", Status.CONFIRMED)
    assert 'id="step-dispose"' in page("officer1", Status.DISPATCHED)
    assert 'id="step-dispatch"' not in page("officer1", Status.DISPATCHED)
    supervisor = page("chief", Status.DISPOSED)
    assert 'id="step-verify"' in supervisor and 'id="disposal-photos"' in supervisor and "处置流程" in supervisor
    assert 'id="step-close"' in page("chief", Status.VERIFIED)
    assert "step-" not in page("chief", Status.CLOSED).split('id="loop"')[1].split("</section>")[0]


def test_a_role_the_table_does_not_name_is_refused_by_the_state_machine_itself():
    with pytest.raises(NotAllowed, match="^上报处置须由执法队员进行，您是中队长$"):
        workflow.check_step(Step.DISPOSE, Status.DISPATCHED, AccountRole.SUPERVISOR, None)
    assert workflow.open_steps(Status.DISPOSED, AccountRole.SUPERVISOR, None) == [Step.VERIFY, Step.SEND_BACK]
    assert workflow.open_steps(Status.DISPOSED, AccountRole.OFFICER, None) == []
    assert set(WHAT_NEXT) == set(Status)


# -- overdue -------------------------------------------------------------------------------------


def test_overdue_is_computed_from_the_deadline_and_the_clock_and_a_supervisor_redispatches(api, clock):
    parking, bins = case_ids(api)[0], case_ids(api, "bin_overflow")[0]
    for case_id in (parking, bins):
        api.through(case_id, Status.DISPATCHED)
    assert api.case(bins)["loop"]["deadline"] == utc(START + timedelta(hours=24))

    def overdue_list() -> list[str]:
        response = api.client.get("/api/cases", headers=api.headers("chief"), params={"overdue": "true"})
        return [item["case_id"] for item in response.json()["items"]]

    clock.advance(hours=1, minutes=59)
    assert overdue_list() == [] and api.case(parking)["overdue"] is False
    refused = api.post("chief", f"{parking}/dispatch", 409, json={"unit": "shuangshan-squad"})
    assert refused.json()["code"] == "not_overdue" and "11:00:00" in refused.json()["detail"]  # district clock

    clock.advance(minutes=2)
    assert overdue_list() == [parking]
    late = api.case(parking)
    assert late["overdue"] is True and late["status"] == "dispatched"
    page = api.client.get(f"/cases/{parking}", headers=api.headers("officer1")).text
    assert 'id="deadline" class="overdue"' in page and "（超期）" in page

    redispatched = api.dispatch(parking, unit="shuangshan-squad", deadline="2026-12-07T15:30", note="交警未到场")
    assert redispatched["loop"]["unit"] == "shuangshan-squad" and redispatched["overdue"] is False
    assert redispatched["loop"]["deadline"] == "2026-12-07T07:30:00.000+00:00"  # typed on the district's clock
    entry = redispatched["audit"][-1]
    assert (entry["action"], entry["action_label"]) == ("redispatch", "超期改派")
    assert entry["detail"]["overdue_deadline"] == utc(START + timedelta(hours=2))
    assert overdue_list() == []

    filed = case_ids(api)[1]
    api.through(filed, Status.FILED)
    past = api.post("chief", f"{filed}/dispatch", 400, json={"unit": "sanitation", "deadline": "2026-12-07T08:00"})
    assert past.json()["detail"] == "处置期限须晚于现在，且在 30 天之内"


# -- uploads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "status", "words"), [
    ("site.jpg", "车已挪走".encode() * 40, 415, "不是 JPEG 或 PNG 图片"),
    ("cut.jpg", picture("JPEG")[:150], 415, "已损坏或不完整"),
    ("tampered.png", tampered_png(), 415, "已损坏或不完整"),
    ("huge.jpg", b"\xff\xd8\xff" + b"\x00" * MAX_PHOTO_BYTES, 413, "超过 5 MB"),
], ids=["not-an-image", "cut-short", "tampered", "too-big"])
def test_a_bad_upload_is_refused_and_nothing_is_stored(api, tmp_path, capsys, name, data, status, words):
    case_id = case_ids(api)[0]
    api.through(case_id, Status.DISPATCHED)
    before = api.case(case_id)

    refused = api.dispose(case_id, [("good.jpg", picture("JPEG")), (name, data)], expect=status)

    assert words in refused.json()["detail"] and name in refused.json()["detail"]
    after = api.case(case_id)
    assert after["status"] == "dispatched" and after["loop"]["photos"] == [] and after["audit"] == before["audit"]
    store = LocalEvidenceStore(tmp_path / "var" / "evidence")
    assert [key for key in store.keys() if "/disposal/" in key] == []
    code, output = patrol_verify(tmp_path / "var", capsys)
    assert code == 0, output


def test_a_disposal_needs_a_photo(api):
    case_id = case_ids(api)[0]
    api.through(case_id, Status.DISPATCHED)
    response = api.client.post(f"/api/cases/{case_id}/dispose", headers=api.headers("officer1"),
                               data={"note": "已处置"})
    assert response.status_code == 422  # the photos field is required


def test_a_changed_disposal_photo_fails_verify(api, tmp_path, capsys):
    case_id = case_ids(api)[0]
    api.through(case_id, Status.DISPOSED)
    photo = api.case(case_id)["loop"]["photos"][0]
    store = LocalEvidenceStore(tmp_path / "var" / "evidence")
    key = next(key for key in store.keys() if key.endswith(f"/disposal/{photo['sha256']}.jpg"))
    store.put(key, picture("JPEG", (0, 0, 255)), "image/jpeg")

    code, output = patrol_verify(tmp_path / "var", capsys)
    assert code != 0 and f"evidence {key}: sha256 is" in output


# -- storage -------------------------------------------------------------------------------------


def test_an_older_review_store_gains_the_loop_tables_and_works(tmp_path):
    path = tmp_path / "review.sqlite3"
    record = filed_case(LocalEvidenceStore(tmp_path / "evidence"), 1, "illegal_parking")
    store = ReviewStore(path)
    store.cases.receive(record)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)  # as a release before the 处置流程 left it
    conn.executescript("DROP TABLE disposal_photos; DROP TABLE case_loop; DROP TABLE outbox;")
    conn.close()

    store = ReviewStore(path)
    try:
        case = store.cases.get(record.case_id)
        assert case.loop is None and "case_number" not in case.review_state()
        officer = User("officer1", AccountRole.OFFICER)
        store.cases.decide(record.case_id, officer, Decision.CONFIRM)
        steps = WorkflowSteps(store.cases, LocalEvidenceStore(tmp_path / "evidence"), load_workflow_config(), DISTRICT)
        assert steps.file(record.case_id, officer).loop.case_number.startswith("双山-")
    finally:
        store.close()
    ReviewStore(path).close()  # opening it again adds nothing twice
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"case_loop", "disposal_photos", "outbox"} <= tables


def test_a_bad_workflow_table_is_named_at_start(tmp_path):
    table = tmp_path / "workflow.yaml"
    table.write_text("case_number_prefix: 双山\nunits: []\ndeadline_hours: {illegal_parking: -2}\n"
                     "default_deadline_hours: 24\n", encoding="utf-8")
    with pytest.raises(workflow.WorkflowConfigError) as error:
        load_workflow_config(table)
    assert str(table) in str(error.value) and "units" in str(error.value) and "deadline_hours" in str(error.value)


# -- the city platform ---------------------------------------------------------------------------


def test_status_changes_reach_the_platform_in_order_once_each_and_a_rejected_case_never_as_a_violation(
        api, tmp_path, capsys, monkeypatch):
    looped, rejected, withdrawn = case_ids(api)[:3]
    api.through(looped, Status.CLOSED)
    api.post("officer1", f"{rejected}/reject", json={"reason": "detector_error"})
    api.confirm(withdrawn)
    api.post("chief", f"{withdrawn}/reopen", json={"note": "复核：车辆有临时停车许可"})
    api.post("officer1", f"{withdrawn}/reject", json={"reason": "authorised"})
    api.post("chief", f"{looped}/assign", json={"assignee": "officer2"})  # office work: not the platform's news
    db = tmp_path / "var" / "review" / "review.sqlite3"
    platform = Platform()
    try:
        platform.answer = lambda key, nth: Answer(503, "维护中".encode())
        assert send_outbox(db, platform.url) == Tally(deferred=1)
        first_key = platform.posts[0].case_id

        filed_key = next(key for key in unsent_keys(db) if key.startswith(looped) and key != first_key)
        platform.answer = lambda key, nth: Answer(400, b'{"error": "unit?"}') if key == filed_key else Answer(201)
        assert send_outbox(db, platform.url) == Tally(forwarded=3, refused=1)  # the looped case waits behind it

        platform.answer = lambda key, nth: Answer(201)
        monkeypatch.setenv("FORWARD_TOKEN", "platform-token-7")
        code = main(["forward", "--from-review", str(db), "--to", platform.url, "--once", "--backoff", "0.02"])
        out = capsys.readouterr().out
        assert code == 0 and "forward: stopped; 4 status changes forwarded, 0 refused, 0 deferred" in out
        assert send_outbox(db, platform.url) == Tally()  # every change was taken: none is sent again

        accepted = [post for post in platform.posts if 200 <= post.status < 300]
        assert set(Counter(post.case_id for post in accepted).values()) == {1}
        assert {post.headers["Authorization"] for post in accepted[-4:]} == {"Bearer platform-token-7"}
        by_case = {case_id: [post.body for post in accepted if post.body["case_id"] == case_id]
                   for case_id in (looped, rejected, withdrawn)}
        assert [body["status"] for body in by_case[looped]] == ["confirmed", "filed", "dispatched", "disposed",
                                                                 "closed"]
        assert by_case[rejected] == []
        assert [body["status"] for body in by_case[withdrawn]] == ["confirmed", "withdrawn"]
        assert by_case[withdrawn][1]["reason"] == "authorised"
        confirmed, _, dispatched, disposed, closed = by_case[looped]
        assert confirmed["record"]["case_id"] == looped and "record" not in closed
        assert dispatched["unit"]["id"] == "traffic-police" and closed["case_number"].startswith("双山-")
        assert [photo["name"] for photo in disposed["photos"]] == ["disposal-1-1.jpg"]
        for post in accepted:
            assert post.headers["Idempotency-Key"] == post.body["idempotency_key"] == (
                f"{post.body['case_id']}/{post.body['audit']['seq']}")
        retried = [post for post in platform.posts if post.case_id == first_key]
        assert len({post.raw_body for post in retried}) == 1 and retried[-1].status == 201  # same key, same bytes
    finally:
        platform.close()


def send_outbox(db: Path, url: str) -> Tally:
    database = ReviewDatabase(db)
    try:
        return OutboxForwarder(Outbox(database), Endpoint(url, timeout_s=2.0), retry=QUICK).run(once=True)
    finally:
        database.close()


def unsent_keys(db: Path) -> list[str]:
    database = ReviewDatabase(db)
    try:
        return [change.idempotency_key for change in Outbox(database).unsent()]
    finally:
        database.close()
