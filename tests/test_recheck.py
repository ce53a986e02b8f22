"""摄像头复核: `patrol recheck` looks through a case's camera after its disposal (or at its deadline)
and files what it saw on the case: an after-photo sha256'd in the evidence store, an audited
``camera_recheck`` entry, the finding on the case page, and 复核未通过 when the violation is still
there at or after the deadline.

The camera is the sample street cut short (streams/samples/sample-street.mp4): its first parked car
stands in the no-parking kerb from 10 s to 55 s (its .gt.json), so a cut from 30 s shows it there and
a cut from 70 s shows the kerb clear. The cases are the sample's car, filed on a small street made in
place (tests/loop_support.py), and the app is the real one under a TestClient.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from loop_support import START, Api, FrozenClock, filed_case, patrol_verify, picture
from review_support import running_app
from support import SAMPLE_VIDEO, camera_file, cut_video, free_port

from pipeline.cli import recheck_verbs
from pipeline.cli.main import main
from pipeline.config import load_camera
from pipeline.engine.recheck import Rechecker, Sighting, judge
from pipeline.evidence import LocalEvidenceStore
from pipeline.queue import SqliteCaseQueue
from pipeline.review.vocabulary import Status
from pipeline.rules.same_event import MIN_IOU
from pipeline.types import CaseRecord, Detections

CAMERA_ID = "shuangshan-sample"
CAR_BOX = (132.6, 385.8, 289.8, 459.0)  # the sample's first parked car, from its ground truth
BIN_BOX = (703.0, 177.4, 756.2, 237.6)  # its overflowing bin
PARKED, LEFT = "parked", "left"


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> dict[str, Path]:
    """A folder holding the sample street's camera file over a 2 s cut, by what the cut shows at the car's spot."""
    root = tmp_path_factory.mktemp("cameras")
    clips = {PARKED: 30.0, LEFT: 70.0}
    return {name: camera_file(root / name / "street.yaml",
                              url=str(cut_video(SAMPLE_VIDEO, root / f"{name}.mp4", start_s=at, seconds=at + 2))).parent
            for name, at in clips.items()}


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    return FrozenClock(monkeypatch, START)


def parked_car(evidence: LocalEvidenceStore, index: int) -> CaseRecord:
    record = filed_case(evidence, index, "illegal_parking")
    return replace(record, camera_id=CAMERA_ID, zone_id="no-parking-kerb", bbox=CAR_BOX)


@contextmanager
def street(var: Path, count: int = 2) -> Iterator[tuple[Api, list[str]]]:
    """The review app over ``count`` cases of the sample's parked car, and their ids."""
    evidence = LocalEvidenceStore(var / "evidence")
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    try:
        records = [parked_car(evidence, index) for index in range(count)]
        for record in records:
            assert queue.publish(record)
    finally:
        queue.close()
    with running_app(var, expect_cases=count) as client:
        yield Api(client), [record.case_id for record in records]


@pytest.fixture
def var(tmp_path) -> Path:
    return tmp_path / "var"


def patrol_recheck(var: Path, cameras: Path, capsys, *options: str) -> tuple[int, str]:
    code = main(["recheck", "--db", str(var / "review" / "review.sqlite3"), "--cameras", str(cameras),
                 "--evidence", str(var / "evidence"), "--timeout", "5", *options])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def page(api: Api, path: str, user: str = "chief") -> str:
    response = api.client.get(path, headers=api.headers(user))
    assert response.status_code == 200, response.text
    return response.text


def entries_of(api: Api, case_id: str, action: str) -> list[dict]:
    return [entry for entry in api.case(case_id)["audit"] if entry["action"] == action]


# -- a disposal rechecked ------------------------------------------------------------------------


def test_the_default_model_sees_the_car_still_parked_and_the_recheck_is_filed_as_audited_evidence(
        var, cameras, clock, capsys):
    with street(var) as (api, (case_id, _)):
        api.through(case_id, Status.DISPOSED)
        clock.advance(minutes=20)

        code, output = patrol_recheck(var, cameras[PARKED], capsys)

        assert code == 0, output
        assert f"recheck {case_id}: still present (confidence 0.9" in output and "after-photo recheck-1.jpg" in output
        [recheck] = api.case(case_id)["loop"]["rechecks"]
        assert recheck["still_present"] is True and recheck["confidence"] > 0.9
        assert recheck["flagged"] is False  # 20 minutes into a 2-hour deadline
        assert recheck["result_label"] == f"仍在（置信度 {recheck['confidence']:.2f}）"
        photo = api.client.get(recheck["url"], headers=api.headers("chief"))
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(photo.content).hexdigest() == recheck["sha256"]

        [entry] = entries_of(api, case_id, "camera_recheck")
        assert (entry["actor"], entry["action_label"]) == ("system", "摄像头复核")
        assert entry["before"]["status"] == entry["after"]["status"] == "disposed"
        assert entry["after"]["rechecks"] == {"recheck-1.jpg": {"sha256": recheck["sha256"], "still_present": True,
                                                                "flagged": False}}
        detail = entry["detail"]
        assert detail["still_present"] is True and detail["confidence"] == recheck["confidence"]
        assert detail["frame_wall"] == recheck["frame_wall"] and detail["model"]["name"] == recheck["model"]
        assert detail["sha256"] == recheck["sha256"]

        shown = page(api, f"/cases/{case_id}")
        assert "摄像头复核：仍在（置信度" in shown and recheck["url"] in shown
        verify_form = shown.split('id="step-verify"')[1].split("</form>")[0]
        assert "摄像头显示违规仍在" in verify_form  # beside the accept and send-back buttons

        assert patrol_recheck(var, cameras[PARKED], capsys) == (0, "")  # rechecked since its disposal: not due

        # The supervisor may accept it all the same: the entry names the recheck it went against.
        api.verify(case_id, note="现场照片显示已拖离")
        [verified] = entries_of(api, case_id, "verify")
        assert verified["detail"]["against_camera_recheck"] == {"name": "recheck-1.jpg",
                                                                "confidence": recheck["confidence"]}
        # A recheck is no status change: the city platform hears of the disposal once.
        with sqlite3.connect(var / "review" / "review.sqlite3") as db:
            sent = [row[0] for row in db.execute("SELECT status FROM outbox WHERE case_id = ? ORDER BY seq",
                                                 (case_id,))]
        assert sent == ["confirmed", "filed", "dispatched", "disposed"]

        code, output = patrol_verify(var, capsys)
        assert code == 0, output


def test_a_kerb_the_car_has_left_reads_cleared_and_a_changed_after_photo_fails_verify(var, cameras, clock, capsys):
    with street(var) as (api, (case_id, _)):
        api.through(case_id, Status.DISPOSED)

        code, output = patrol_recheck(var, cameras[LEFT], capsys)

        assert code == 0 and f"recheck {case_id}: cleared (confidence 1.00)" in output, output
        [recheck] = api.case(case_id)["loop"]["rechecks"]
        assert (recheck["still_present"], recheck["confidence"], recheck["flagged"]) == (False, 1.0, False)
        shown = page(api, f"/cases/{case_id}")
        assert "摄像头复核：已清除（置信度 1.00）" in shown and "摄像头显示违规仍在" not in shown
        assert patrol_verify(var, capsys)[0] == 0

        key = entries_of(api, case_id, "camera_recheck")[0]["detail"]["key"]
        (var / "evidence" / key).write_bytes(b"not the picture the camera took")
        code, output = patrol_verify(var, capsys)
        assert code == 1 and f"evidence {key}: sha256 is" in output


def test_every_keeps_rechecking_round_after_round_until_stopped(var, cameras, clock, capsys, monkeypatch):
    with street(var) as (api, (first, second)):
        api.through(first, Status.DISPOSED)
        api.through(second, Status.DISPATCHED)
        waits = []

        def wait(seconds: float) -> None:  # between rounds: the unit reports the second disposal, then Ctrl-C
            waits.append(seconds)
            if len(waits) > 1:
                raise KeyboardInterrupt
            clock.advance(minutes=10)
            api.dispose(second, [("site.jpg", picture("JPEG"))])

        monkeypatch.setattr(recheck_verbs, "time", SimpleNamespace(sleep=wait))
        code, output = patrol_recheck(var, cameras[LEFT], capsys, "--every", "30")

        assert code == 0 and waits == [30.0, 30.0]
        assert [line.split(":")[0] for line in output.splitlines()] == [f"recheck {first}", f"recheck {second}"]


# -- the deadline --------------------------------------------------------------------------------


def test_a_violation_still_there_at_its_deadline_is_flagged_until_a_recheck_finds_it_gone(
        var, cameras, clock, capsys):
    with street(var) as (api, (late, also_late)):
        api.through(late, Status.DISPATCHED)
        api.through(also_late, Status.DISPATCHED)
        assert patrol_recheck(var, cameras[PARKED], capsys) == (0, "")  # dispatched, deadline to come: not due
        clock.advance(hours=2, minutes=1)  # illegal_parking has 2 hours in the packaged table

        code, output = patrol_recheck(var, cameras[PARKED], capsys)

        assert code == 0, output
        assert output.count("flagged 复核未通过") == 2 and output.count("still present") == 2
        case = api.case(late)
        assert case["recheck_failed"] is True and case["loop"]["rechecks"][0]["flagged"] is True
        flagged = api.client.get("/api/cases", params={"recheck_failed": "true"}, headers=api.headers("chief"))
        assert {item["case_id"] for item in flagged.json()["items"]} == {late, also_late}
        assert 'id="recheck-failed"' in page(api, f"/cases/{late}")
        assert patrol_recheck(var, cameras[PARKED], capsys) == (0, "")  # rechecked since the deadline

        # The unit clears the kerb late and reports it; the camera agrees, and the flag lifts.
        clock.advance(minutes=30)
        api.dispose(late, [("site.jpg", picture("JPEG"))])
        code, output = patrol_recheck(var, cameras[LEFT], capsys)
        assert code == 0 and f"recheck {late}: cleared" in output and "复核未通过" not in output, output
        assert api.case(late)["recheck_failed"] is False
        listed = page(api, "/?status=&recheck=failed")
        assert also_late in listed and late not in listed and 'class="badge recheck-failed"' in listed

        code, output = patrol_verify(var, capsys)
        assert code == 0, output


# -- what a recheck refuses ----------------------------------------------------------------------


def test_a_dead_camera_leaves_the_case_as_it_was_and_says_why(var, tmp_path, clock, capsys):
    url = f"rtsp://127.0.0.1:{free_port()}/street"  # nothing listens there
    dead = camera_file(tmp_path / "dead" / "street.yaml", url=url).parent
    with street(var) as (api, (case_id, new_case)):
        api.through(case_id, Status.DISPOSED)
        before = api.case(case_id)

        code, output = patrol_recheck(var, dead, capsys)

        assert code == 1
        assert output == (f"recheck {case_id}: camera unreachable: camera {CAMERA_ID}: cannot open {url}: "
                          "Connection refused; the case is left as it was\n")
        assert api.case(case_id) == before
        code, output = patrol_recheck(var, dead, capsys, "--case", new_case)
        assert code == 2 and "当前为「待审核」，不做摄像头复核" in output
        code, output = patrol_verify(var, capsys)
        assert code == 0, output


# -- how a finding is judged ---------------------------------------------------------------------


def test_the_same_object_is_a_box_overlapping_the_case_box_and_a_neighbour_only_lowers_the_confidence():
    same = Sighting(CAR_BOX, "vehicle", 0.8, MIN_IOU)
    neighbour = Sighting(CAR_BOX, "vehicle", 0.7, MIN_IOU / 2)
    assert judge([neighbour, same]) == (True, 0.8)
    assert judge([neighbour]) == (False, pytest.approx(0.3))
    assert judge([]) == (False, 1.0)


class StandInDetector:
    """Gives the same boxes for every picture: the model is not what these tests are about."""

    parallel_runs = 1
    name = "stand-in"
    providers = ["CPUExecutionProvider"]

    def __init__(self, *boxes: tuple[tuple[float, ...], str, float]) -> None:
        self._boxes = boxes

    def model_record(self) -> dict[str, object]:
        return {"name": self.name, "sha256": "0" * 64}

    def detect(self, images):
        return [Detections(xyxy=np.array([box for box, _, _ in self._boxes], np.float32).reshape(-1, 4),
                           score=np.array([score for _, _, score in self._boxes], np.float32),
                           class_id=np.zeros(len(self._boxes), np.int32),
                           role=np.array([role for _, role, _ in self._boxes], dtype="<U24"))
                for _ in images]


def test_a_bin_case_is_judged_by_the_roles_its_zone_rule_watches(cameras, tmp_path):
    case = replace(parked_car(LocalEvidenceStore(tmp_path), 0), violation="bin_overflow", zone_id="bin-east",
                   bbox=BIN_BOX)
    camera = load_camera(cameras[PARKED] / "street.yaml")
    pile = Rechecker([camera], StandInDetector((BIN_BOX, "garbage_pile", 0.6), (BIN_BOX, "vehicle", 0.9)))
    finding = pile.look(case).finding
    assert (finding.still_present, finding.confidence, finding.model["name"]) == (True, 0.6, "stand-in")
    assert finding.photo_jpeg.startswith(b"\xff\xd8\xff")

    only_a_car = Rechecker([camera], StandInDetector((BIN_BOX, "vehicle", 0.9))).look(case).finding
    assert (only_a_car.still_present, only_a_car.confidence) == (False, 1.0)  # a car is no bin
    unknown = Rechecker([camera], StandInDetector()).look(replace(case, zone_id="gone-zone"))
    assert unknown.finding is None and "has no bin_overflow rule in a zone gone-zone" in unknown.problem
