"""A whole shift in headless Chromium (issue 15's "done when"), through the pages the officers use.

王小明 and 李娜 (officers) claim different cases without a collision, and 李娜 opening 王小明's case
is told in Chinese that he holds it. 王小明 confirms his case and files it (立案); 张强 (supervisor)
dispatches it with a deadline through the page's form; 王小明 uploads a disposal photo through the
page's file input; 张强 verifies and closes it. The statistics page counts the closed case, its dossier
PDF holds its plate and 王小明's badge number, and its clip answers a byte range with 206. On the way
an illegal transition, a tampered upload, an expired claim and a stale page each get a Chinese
message, and `patrol verify` finds the audit chain whole at the end.

Between 上报处置 and 核查 the case's camera looks at the spot again (摄像头复核, issue 15 item 3:
`patrol recheck`, run beside the service) and files its after-photo on the case, which 张强 sees
when he verifies and which the closed case keeps.

The street is the sample street's own: its frames and ground-truth boxes, rendered by the patrol's
evidence renderer, with clips cut by the patrol's packet ring from the sample video, queued on SQLite;
no replay (the model over the whole sample is half a minute on two cores). Screenshots at desktop and
phone size go to var/screenshots/shift/.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import cv2
import httpx
import numpy as np
import pytest
from browser_support import (
    SCREENSHOTS,
    VIEWPORTS,
    case_page_ready,
    chromium,
    log_in,
    press,
    screenshots_at_each_size,
    viewport,
    wait_for_intake,
)
from pypdf import PdfReader
from review_support import PASSWORD, STREAMS
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from support import SAMPLE_CAMERA, SAMPLE_VIDEO, START

from pipeline.cli.main import main
from pipeline.config import load_camera
from pipeline.evidence import CameraInfo, EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.evidence.plate import PlateReader, PlateReading
from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S, CameraFault
from pipeline.ingest.clip import PacketRing, StreamParams
from pipeline.queue import SqliteCaseQueue
from pipeline.review import claims
from pipeline.review.auth import SESSION_COOKIE
from pipeline.review.claims import DEFAULT_CLAIM_S
from pipeline.review.dossier import find_dossier_font
from pipeline.review.server import start_review_server
from pipeline.types import Frame, Violation
from pipeline.vocabulary import ViolationKind

pytestmark = pytest.mark.servers  # headless Chromium against the review server on a port

DISTRICT = ZoneInfo("Asia/Shanghai")
SHOTS = SCREENSHOTS / "shift"
# (login, role, 姓名, 执法证号), added with `patrol users add`
WANG, LI, ZHANG = ("wang.xm", "officer", "王小明", "3701-0001"), ("li.na", "officer", "李娜", "3701-0002"), (
    "zhang.q", "supervisor", "张强", "3701-0100")
# The sample's episodes the patrol files cases for (kind, start in sample-street.gt.json), oldest first.
EPISODES = (("illegal_parking", 10.0), ("stall_encroachment", 20.0), ("bin_overflow", 60.0), ("illegal_parking", 80.0))
# The sample street is synthetic: its cars carry no legible plate, so these stand in for what the OCR
# reads (the OCR itself: tests/test_plates.py). By episode start.
PLATES = {10.0: "鲁AD2731", 80.0: "鲁A8K6Q5"}
AFTER_S = 58.0  # the kerb after the first parked car left (at 55 s): the disposal's field photo
FAULT_S = 110.0  # the camera goes offline here: a 故障报警 case as well
MODEL = {"name": "patrol-street", "sha256": "0" * 64}
NOT_AN_IMAGE = "车已挪走，现场已恢复".encode() * 40  # sent as site-photo.jpg


# -- the street ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Street:
    var: Path
    parked: str  # 王小明's case, walked to 结案; it has a plate and a clip
    stall: str  # 李娜's case: the stale page
    bin: str  # the expired claim
    later_parked: str  # untouched until the phone layout is measured on it
    plate: str  # the parked case's


class SamplePlates(PlateReader):
    """Reads ``text`` on the middle of every vehicle crop (the stand-in's plate.jpg is that part of the car)."""

    text = ""

    def read(self, crop: np.ndarray) -> PlateReading | None:
        height, width = crop.shape[:2]
        box = (width * 3 // 8, height * 9 // 20, width * 5 // 8, height * 5 // 8)
        return PlateReading(self.text, 0.93, box, "blue") if self.text else None


def sample_pictures(times: set[float], spans: list[tuple[float, float]]) -> tuple[dict, dict]:
    """The sample video's pictures (BGR) at ``times`` and MP4 clips of ``spans`` (start, end), in one
    pass: the packets go through a PacketRing as a camera's do, and a clip is cut once the stream is
    past its end, as the patrol cuts one."""
    pictures, clips = {}, {}
    wanted, due = sorted(times), sorted(spans, key=lambda span: span[1])
    ring, params = PacketRing(30.0), None
    with av.open(str(SAMPLE_VIDEO)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:  # the last, empty packet only flushes the decoder
                pts_s = float(packet.pts * stream.time_base)
                dts_s = float((packet.dts if packet.dts is not None else packet.pts) * stream.time_base)
                params = params or (StreamParams.from_stream(stream, packet) if packet.is_keyframe else None)
                if params is not None:
                    ring.add(bytes(packet), pts_s=pts_s, dts_s=dts_s, keyframe=packet.is_keyframe, params=params)
                while due and due[0][1] <= pts_s:
                    span = due.pop(0)
                    clips[span] = ring.clip(*span)
            for frame in packet.decode():
                while wanted and frame.time >= wanted[0] - 1e-3:
                    pictures[wanted.pop(0)] = frame.to_ndarray(format="bgr24")
            if not wanted and not due:
                break
    assert not wanted and not due, (wanted, due)
    return pictures, clips


def build_street(var: Path) -> tuple[Street, bytes]:
    """The sample camera's cases, rendered and queued under ``var`` (the Workspace layout) as the
    patrol files them, and the disposal's field photo (JPEG)."""
    camera = load_camera(SAMPLE_CAMERA)
    info = CameraInfo(camera.id, camera.name, {**camera.location.model_dump(), "timezone": camera.timezone})
    truth = json.loads(SAMPLE_VIDEO.with_suffix(".gt.json").read_text())
    episodes = [next(e for e in truth["episodes"] if (e["kind"], e["start_s"]) == wanted) for wanted in EPISODES]
    zones = {zone.id: zone for zone in camera.zones}
    dwell = {(zone.id, rule.type): rule.dwell_s for zone in camera.zones for rule in zone.rules}
    confirmed = [episode["start_s"] + dwell[episode["zone_id"], episode["kind"]] for episode in episodes]
    spans = [(at - CLIP_BEFORE_S, at + CLIP_AFTER_S) for at in confirmed]
    pictures, clips = sample_pictures({*(e["start_s"] for e in episodes), *confirmed, AFTER_S, FAULT_S}, spans)

    def frame(at: float) -> Frame:
        return Frame(camera.id, round(at * camera.analysis_fps), at, START + at, pictures[at])

    def case_id(letter: str, *words: object) -> str:
        return f"{letter}-{hashlib.sha256('/'.join(map(str, ('shift', *words))).encode()).hexdigest()[:16]}"

    plates = SamplePlates()
    renderer = EvidenceRenderer(load_event_codes(), "0.1.0", plates=plates)
    evidence = LocalEvidenceStore(var / "evidence")
    queue = SqliteCaseQueue(var / "queue" / "cases.sqlite3")
    filed = []
    try:
        for index, (episode, at, span) in enumerate(zip(episodes, confirmed, spans, strict=True)):
            kind, box = ViolationKind(episode["kind"]), tuple(episode["box"])
            violation = Violation(
                case_id=case_id(kind.letter, kind.value, episode["start_s"]), kind=kind.value, camera_id=camera.id,
                zone_id=episode["zone_id"], track_id=11 + 17 * index, role=kind.role.value,
                first_seen_s=episode["start_s"], confirmed_s=at, bbox=box, score=0.89,
                first_frame=frame(episode["start_s"]), first_bbox=box, trigger_frame=frame(at))
            plates.text = PLATES.get(episode["start_s"], "")
            case = renderer.render(violation, camera=info, clip_mp4=clips[span], model=MODEL,
                                   zone_polygon_px=zones[episode["zone_id"]].polygon_px(frame(at).size))
            filed.append(case)
        since = START + FAULT_S
        filed.append(renderer.render_camera_fault(
            CameraFault(case_id=case_id("F", FAULT_S), since_wall=since, filed_wall=since + 300, stream_s=FAULT_S,
                        state="offline", reason="connection refused", last_frame=frame(FAULT_S)),
            camera=info, model=MODEL))
        for case in filed:
            case.store_into(evidence)
            assert queue.publish(case.record)
    finally:
        queue.close()
    parked, stall, bins, later, _fault = (case.record for case in filed)
    assert parked.plate["text"] == PLATES[10.0] and "clip.mp4" in parked.evidence and "plate.jpg" in parked.evidence
    left, top, right, bottom = (round(v) for v in episodes[0]["box"])
    kerb = pictures[AFTER_S][top - 40:bottom + 20, left - 40:right + 40]
    photo = cv2.imencode(".jpg", kerb, [cv2.IMWRITE_JPEG_QUALITY, 88])[1].tobytes()
    return Street(var, parked.case_id, stall.case_id, bins.case_id, later.case_id, parked.plate["text"]), photo


@pytest.fixture
def street(tmp_path) -> Street:
    """The street under tmp_path/var; beside it, the two files an officer uploads."""
    street, photo = build_street(tmp_path / "var")
    (tmp_path / "site-after.jpg").write_bytes(photo)
    (tmp_path / "site-photo.jpg").write_bytes(NOT_AN_IMAGE)
    return street


# -- the shift ----------------------------------------------------------------------------------


class Shift:
    """The service over the street, the three people's browsers, and the API as 张强 reads it."""

    def __init__(self, street: Street, url: str, browsers: dict[str, object], claims_moved_on: list[float]) -> None:
        self.street, self.url, self.browsers = street, url, browsers
        self.claims_moved_on = claims_moved_on  # seconds added to the claims' clock
        self.db = street.var / "review" / "review.sqlite3"
        cookie = browsers["zhang"].get_cookie(SESSION_COOKIE)["value"]
        self.api = httpx.Client(base_url=url, cookies={SESSION_COOKIE: cookie}, timeout=30)

    def case(self, case_id: str) -> dict:
        answer = self.api.get(f"/api/cases/{case_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def open(self, who: str, case_id: str) -> object:
        driver = self.browsers[who]
        driver.get(f"{self.url}cases/{case_id}")
        case_page_ready(driver, case_id)
        return driver


def status_shown(driver, label: str) -> None:
    """Waits until the (re)loaded case page shows ``label`` as the case's state."""
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "const s = document.getElementById('case-status');"
        "return document.readyState === 'complete' && s ? s.textContent : null;") == label)


def claim_banner(driver, state: str) -> str:
    """Waits until the claim banner is in ``state`` (free, mine, theirs, refused); its visible text."""
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "const b = document.getElementById('claim-banner'); return b && b.dataset.state;") == state)
    return driver.find_element(By.ID, "claim-banner").text


def error_shown(driver) -> str:
    """Waits for the page's error banner; its text."""
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "const e = document.getElementById('action-error'); return e && !e.classList.contains('hidden');"))
    return driver.find_element(By.ID, "action-error-text").text


def submit(driver, step: str, button: str = "button[type=submit]") -> None:
    driver.find_element(By.CSS_SELECTOR, f"#step-{step} {button}").click()


def clock(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(DISTRICT).strftime("%H:%M")


def test_two_officers_and_their_supervisor_walk_a_case_from_claim_to_close(street, tmp_path, monkeypatch, capsys):
    started = time.perf_counter()
    var, db = street.var, street.var / "review" / "review.sqlite3"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    for name, role, display_name, badge in (WANG, LI, ZHANG):
        assert main(["users", "add", name, "--role", role, "--password-file", str(password_file),
                     "--display-name", display_name, "--badge", badge, "--db", str(db)]) == 0
    # Claims are read against claims.clock: moving it on stands for the claim's ten minutes passing.
    moved_on = [0.0]
    monkeypatch.setattr(claims, "clock", lambda: time.time() + moved_on[0])
    server = start_review_server(var, port=0, streams_dir=STREAMS)
    browsers: dict[str, object] = {}
    try:
        wait_for_intake(var)
        for who, (name, *_) in (("wang", WANG), ("li", LI), ("zhang", ZHANG)):
            browsers[who] = chromium((1366, 900))
            log_in(browsers[who], server.url, name, PASSWORD)
        shift = Shift(street, server.url, browsers, moved_on)
        set_up_s = time.perf_counter() - started
        walk(shift, tmp_path)
        checks_after_the_walk(shift, capsys)
        for who, driver in browsers.items():
            errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
                      and "the server responded with a status of 4" not in entry["message"]]  # the refusals
            assert errors == [], who  # no script error, nothing refused by the content security policy
    finally:
        for driver in browsers.values():
            driver.quit()
        server.stop()
    code = main(["verify", "--db", str(db), "--evidence", str(var / "evidence")])
    output = capsys.readouterr()
    assert code == 0, output.out + output.err
    with capsys.disabled():
        print(f"\nshift walk: {time.perf_counter() - started:.1f} s ({set_up_s:.1f} s to set up); "
              f"screenshots in {SHOTS}")


def walk(shift: Shift, files: Path) -> None:
    street, wang, li, zhang = shift.street, *(shift.browsers[who] for who in ("wang", "li", "zhang"))
    parked, stall = street.parked, street.stall

    # 认领: each officer opens a case from the list; both claims hold.
    wang.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{parked}"] a').click()
    case_page_ready(wang, parked)
    assert claim_banner(wang, "mine").startswith("您已认领此案件（至 ")
    li.find_element(By.CSS_SELECTOR, f'.card[data-case-id="{stall}"] a').click()
    case_page_ready(li, stall)
    assert claim_banner(li, "mine").startswith("您已认领此案件（至 ")
    held = {case_id: shift.case(case_id)["claim"] for case_id in (parked, stall)}
    assert {case_id: claim["holder"] for case_id, claim in held.items()} == {parked: WANG[0], stall: LI[0]}
    zhang.get(shift.url)
    cards = {card.get_attribute("data-case-id"): card.text for card in zhang.find_elements(By.CSS_SELECTOR, ".card")}
    assert f"王小明 认领中（至 {clock(held[parked]['expires_at'])}）" in cards[parked]
    assert f"李娜 认领中（至 {clock(held[stall]['expires_at'])}）" in cards[stall]
    screenshots_at_each_size(zhang, SHOTS, "list-with-claims")

    # 李娜 opens 王小明's case: she is told who holds it, and his claim stays his.
    shift.open("li", parked)
    assert claim_banner(li, "theirs") == f"该案件已由 王小明 认领（至 {clock(held[parked]['expires_at'])}），请选择其他案件。"
    assert shift.case(parked)["claim"]["holder"] == WANG[0]
    shift.open("li", stall)  # leaving it freed it; back on it, she claims it again
    claim_banner(li, "mine")

    # 王小明 confirms: the page says so, with his name and badge number.
    wang.find_element(By.ID, "btn-confirm").click()
    status_shown(wang, "已确认")
    assert wang.find_element(By.ID, "done-banner").text == f"案件 {parked} 已确认。"
    assert wang.find_element(By.ID, "decision").text.startswith("王小明（执法证号 3701-0001）")

    # A stale page: 张强 takes 李娜's case over and rejects it while her page still shows it new.
    shift.open("zhang", stall)
    assert "该案件已由 李娜 认领" in claim_banner(zhang, "theirs")
    zhang.find_element(By.ID, "btn-takeover").click()
    claim_banner(zhang, "mine")
    zhang.find_element(By.ID, "btn-reject").click()
    zhang.find_element(By.ID, "reject-submit").click()  # the first reason: 非违规
    WebDriverWait(zhang, 10).until(lambda d: d.find_elements(By.ID, "done-banner"))
    li.find_element(By.ID, "btn-confirm").click()
    assert re.fullmatch(rf"操作失败：案件 {stall} 在您打开后已有变化：张强 于 \d\d:\d\d 驳回，现为“已驳回”。"
                        "请重新加载此案件，看过最新情况后再处理", error_shown(li))
    li.find_element(By.ID, "reload-case").click()
    status_shown(li, "已驳回")
    assert shift.case(stall)["decision"]["decided_by"] == ZHANG[0]

    # 立案 by 王小明: the case gets its number.
    assert "处置流程" in wang.find_element(By.ID, "loop").text
    wang.find_element(By.CSS_SELECTOR, "#step-file input[name=note]").send_keys("现场核实，依法立案")
    submit(wang, "file")
    status_shown(wang, "已立案")
    assert re.fullmatch(r"双山-\d{8}-0001", wang.find_element(By.ID, "case-number").text)
    assert not wang.find_elements(By.ID, "done-banner")  # "案件 … 已确认" is news no more
    assert not wang.find_elements(By.CSS_SELECTOR, "form.loop-step")  # 派遣 is the supervisor's

    # 派遣 by 张强, through the page's form, with a deadline of his own.
    shift.open("zhang", parked)
    Select(zhang.find_element(By.CSS_SELECTOR, "#step-dispatch select[name=unit]")).select_by_value("traffic-police")
    deadline = (datetime.now(DISTRICT) + timedelta(hours=3)).replace(second=0, microsecond=0)
    zhang.execute_script("arguments[0].value = arguments[1];",
                         zhang.find_element(By.CSS_SELECTOR, "#step-dispatch input[name=deadline]"),
                         deadline.strftime("%Y-%m-%dT%H:%M"))
    submit(zhang, "dispatch")
    status_shown(zhang, "已派遣")
    wang.refresh()
    status_shown(wang, "已派遣")
    assert wang.find_element(By.ID, "loop-unit").text == "章丘交警大队双山中队"
    assert wang.find_element(By.ID, "deadline").text == f"{deadline:%Y-%m-%d %H:%M}:00"
    assert wang.find_element(By.ID, "step-dispose").is_displayed()
    screenshots_at_each_size(wang, SHOTS, "case-mid-loop")
    shift.open("li", parked)  # 李娜 has the dispatched case open too
    status_shown(li, "已派遣")

    # A tampered upload: a .jpg that is no picture is refused, and nothing is stored.
    upload = wang.find_element(By.CSS_SELECTOR, "#step-dispose input[type=file]")
    upload.send_keys(str(files / "site-photo.jpg"))
    submit(wang, "dispose")
    assert error_shown(wang) == ("操作失败：照片 site-photo.jpg 不是 JPEG 或 PNG 图片（按文件内容判断，与扩展名无关），"
                                 "未保存")
    assert shift.case(parked)["status"] == "dispatched" and shift.case(parked)["loop"]["photos"] == []
    # 上报处置 by 王小明 with the kerb's photo.
    wang.execute_script("arguments[0].value = '';", upload)
    upload.send_keys(str(files / "site-after.jpg"))
    wang.find_element(By.CSS_SELECTOR, "#step-dispose input[name=note]").send_keys("车辆已驶离，现场已恢复")
    submit(wang, "dispose")
    status_shown(wang, "已处置")
    [photo] = shift.case(parked)["loop"]["photos"]
    assert photo["sha256"] == hashlib.sha256((files / "site-after.jpg").read_bytes()).hexdigest()
    assert len(wang.find_elements(By.CSS_SELECTOR, "#disposal-photos img")) == 1

    # An illegal transition on 李娜's page, left open at 已派遣: the case is disposed already.
    li.find_element(By.CSS_SELECTOR, "#step-dispose input[type=file]").send_keys(str(files / "site-after.jpg"))
    submit(li, "dispose")
    assert error_shown(li) == "操作失败：案件当前为「已处置」，不能上报处置：请中队长核查处置结果"
    # And one the page does not offer, asked of the API in 张强's session: closing before 核查.
    refused = zhang.execute_async_script("""
        const [url, done] = arguments;
        fetch(url, {method: 'POST', credentials: 'same-origin', body: '{}', headers: {
            'Content-Type': 'application/json',
            'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content}})
          .then(async (answer) => done({status: answer.status, body: await answer.json()}));
    """, f"/api/cases/{parked}/close")
    assert refused == {"status": 409, "body": {"detail": "案件当前为「已处置」，不能结案：请中队长核查处置结果",
                                               "code": "workflow_state"}}
    assert len(shift.case(parked)["loop"]["photos"]) == 1

    # 摄像头复核: the case's camera looks at the spot again (`patrol recheck`, run beside the service: here
    # once, for this case) and files its after-photo; 张强 sees it beside the field photo when he verifies.
    assert main(["recheck", "--case", parked, "--cameras", str(SAMPLE_CAMERA), "--db", str(shift.db),
                 "--evidence", str(street.var / "evidence")]) == 0
    zhang.refresh()
    status_shown(zhang, "已处置")
    assert zhang.find_element(By.ID, "verify-recheck").text.startswith("摄像头复核：")
    assert len(zhang.find_elements(By.CSS_SELECTOR, "#camera-rechecks img")) == 1
    press(zhang, "u")  # 重新打开 is for decided cases, not for one in 处置流程: the key offers nothing here
    assert not zhang.find_element(By.ID, "reopen-picker").is_displayed()
    screenshots_at_each_size(zhang, SHOTS, "case-at-verify")

    # 核查 and 结案 by 张强.
    submit(zhang, "verify", "button[value=true]")
    status_shown(zhang, "已核查")
    submit(zhang, "close")
    status_shown(zhang, "已结案")
    wang.refresh()
    status_shown(wang, "已结案")
    assert not wang.find_elements(By.CSS_SELECTOR, "form.loop-step")
    actions = wang.execute_script(
        "return [...document.querySelectorAll('#audit tbody tr:not(.view)')].map(row => row.children[3].textContent);")
    assert {"认领", "确认", "立案", "派遣", "上报处置", "核查通过", "结案"} <= set(actions)
    [recheck] = shift.case(parked)["loop"]["rechecks"]
    assert recheck["name"] in wang.find_element(By.ID, "camera-rechecks").get_attribute("innerHTML")
    after_photo = shift.api.get(recheck["url"])
    assert after_photo.status_code == 200 and after_photo.content.startswith(b"\xff\xd8\xff")

    # An expired claim: 王小明 claims the bin case and lets it run out; 李娜 takes it; his decision is refused.
    shift.open("wang", street.bin)
    claim_banner(wang, "mine")
    shift.claims_moved_on[0] += DEFAULT_CLAIM_S + 1  # ten minutes and a second later
    assert shift.case(street.bin)["claim"] is None
    shift.open("li", street.bin)
    claim_banner(li, "mine")
    taken = shift.case(street.bin)["claim"]
    wang.find_element(By.ID, "btn-confirm").click()
    assert error_shown(wang) == f"操作失败：该案件已由 李娜 认领（至 {clock(taken['expires_at'])}），请选择其他案件"
    assert shift.case(street.bin)["status"] == "new"


def checks_after_the_walk(shift: Shift, capsys) -> None:
    street, li, zhang = shift.street, shift.browsers["li"], shift.browsers["zhang"]

    # 统计考评: the closed case is counted, and 王小明's row holds it.
    zhang.get(f"{shift.url}stats")
    summary = {item.find_element(By.CSS_SELECTOR, "span").text: item.find_element(By.TAG_NAME, "strong").text
               for item in zhang.find_elements(By.CSS_SELECTOR, "#summary li")}
    assert summary["已派遣 / 已结案"] == "1 / 1" and summary["已确认"] == "1", summary
    row = zhang.find_elements(By.CSS_SELECTOR, f'#by-officer-table tr[data-key="{WANG[0]}"] td')
    cells = [cell.text for cell in row]
    assert cells[0].startswith("王小明") and (cells[8], cells[9]) == ("1", "1"), cells  # 已派遣, 已结案
    screenshots_at_each_size(zhang, SHOTS, "stats")

    # 案卷: one PDF with the plate and the badge number of the officer who confirmed the case.
    if find_dossier_font() is None:
        pytest.fail("the dossier needs a CJK font: apt-get install fonts-wqy-microhei "
                    "(tests/servers/install-packages.sh)", pytrace=False)
    dossier = shift.api.get(f"/api/cases/{street.parked}/dossier.pdf")
    assert dossier.status_code == 200 and dossier.content.startswith(b"%PDF"), dossier.text[:200]
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(dossier.content)).pages)
    assert street.plate in text and "王小明（执法证号 3701-0001）" in text

    # The clip, by byte range, as the page's video player asks for it.
    clip = shift.api.get(f"/api/cases/{street.parked}/evidence/clip.mp4", headers={"Range": "bytes=0-99"})
    key = shift.case(street.parked)
    stored = next(item for item in key["evidence"] if item["name"] == "clip.mp4")
    whole = shift.api.get(stored["url"]).content
    assert clip.status_code == 206 and clip.content == whole[:100] and len(clip.content) == 100
    assert clip.headers["content-range"] == f"bytes 0-99/{len(whole)}"

    # Item 10: an officer decides a new case without scrolling to the buttons, on a desktop and on a phone.
    found = []
    for size in VIEWPORTS:
        with viewport(li, size):
            li.get(f"{shift.url}cases/{street.later_parked}")
            case_page_ready(li, street.later_parked)
            found.append((size, li.execute_script("""
                const boxes = [...document.querySelectorAll('#actions button')].map(b => b.getBoundingClientRect());
                return {top: Math.round(Math.min(...boxes.map(r => r.top))) + window.scrollY,
                        bottom: Math.round(Math.max(...boxes.map(r => r.bottom))) + window.scrollY,
                        viewport: window.innerHeight, width: window.innerWidth,
                        page: document.documentElement.scrollHeight, page_width: document.documentElement.scrollWidth,
                        wider: [...document.querySelectorAll('body *')]
                          .filter(e => e.getBoundingClientRect().right > arguments[0] + 0.5)
                          .slice(0, 4).map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)};""",
                VIEWPORTS[size][0])))
            li.save_screenshot(str(SHOTS / f"case-new-first-screen-{size}.png"))
    lines = [f"{size} {m['width']}x{m['viewport']}: decision buttons at y {m['top']}-{m['bottom']} px of a "
             f"{m['page']} px page; " + ("visible without scrolling" if m["bottom"] <= m["viewport"] else
                                        "BELOW the first screen: the officer scrolls to decide")
             + (f"; wider than the screen: {', '.join(m['wider'])}" if m["wider"] else "")
             for size, m in found]
    (SHOTS / "decision-buttons.txt").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    # the page itself no wider than the screen (a wide table scrolls in its own box), so the phone does not zoom out
    assert all(m["bottom"] <= m["viewport"] and m["page_width"] <= m["width"] for _, m in found), lines
