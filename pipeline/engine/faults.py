"""Camera faults: a live camera without video past its threshold becomes one 故障报警 case, and
a note on that case when its video comes back. So does the main stream of a camera with a
sub-stream, down past the same threshold while the sub-stream is analysed: the patrol goes on,
but its evidence is the sub-stream's, too small for a plate; that case carries a note saying so.
A worker whose evidence spool took no case for a while (its disk full) files, once the cases held
meanwhile are all written, one 故障报警 case for each camera whose cases waited: why they reached
review late."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.delivery import SpoolOutage
from pipeline.evidence import CameraInfo
from pipeline.evidence.render import CameraFault
from pipeline.ingest import StateChange
from pipeline.types import CaseNote, CaseRecord, Frame
from pipeline.vocabulary import CameraState


@dataclass(frozen=True)
class FileFault:
    """The camera has been without video since ``since_wall``: file its fault case."""

    case_id: str
    since_wall: float


@dataclass(frozen=True)
class Recovered:
    """The camera whose fault case ``case_id`` was filed delivers video again."""

    case_id: str
    since_wall: float  # when it went down
    back_wall: float


class FaultWatch:
    """One camera's outage clock. An outage runs from the camera last leaving ``live`` (or from the
    start, if it never got there) until it is live again; reconnect attempts in between do not
    restart it. At most one fault case per outage."""

    def __init__(self, camera_id: str, threshold_s: float, started_wall: float, cause: str = "camera_fault") -> None:
        self.camera_id = camera_id
        self.threshold_s = threshold_s
        self.cause = cause  # of the case id: a camera's and its main stream's outages are cases of their own
        self.down_since: float | None = started_wall
        self.filed_case: str | None = None

    def observe(self, state: CameraState | str, now_wall: float) -> FileFault | Recovered | None:
        state = CameraState(state)
        if state == CameraState.LIVE:
            down_since, self.down_since = self.down_since, None
            if self.filed_case is not None and down_since is not None:
                case_id, self.filed_case = self.filed_case, None
                return Recovered(case_id, down_since, now_wall)
            return None
        if not state.down:  # ended, failed, stopped: not an outage of a live camera
            return None
        if self.down_since is None:
            self.down_since = now_wall
        if self.filed_case is None and now_wall - self.down_since >= self.threshold_s:
            self.filed_case = fault_case_id(self.camera_id, self.down_since, self.cause)
            return FileFault(self.filed_case, self.down_since)
        return None


def fault_case_id(camera_id: str, since_wall: float, cause: str = "camera_fault") -> str:
    """``F-`` and 16 hex digits: one id per camera, cause and outage start (to the millisecond)."""
    key = f"{cause}|{camera_id}|{round(since_wall * 1000)}"
    return f"F-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def fault_case(event: FileFault, now_wall: float, *, state: str, reason: str, stream_s: float,
               last_frame: Frame | None, history: list[StateChange]) -> CameraFault:
    """The fault case to file for ``event``: the camera's last picture and recent state changes."""
    return CameraFault(case_id=event.case_id, since_wall=event.since_wall, filed_wall=now_wall, stream_s=stream_s,
                       state=state, reason=reason, last_frame=last_frame,
                       history=tuple((c.old, c.new, c.wall_ts, c.reason) for c in history[-20:]))


def recovery_note(event: Recovered, camera_id: str, timezone: ZoneInfo, *, main_stream: bool = False) -> CaseNote:
    """The note that tells the fault case's reviewer (in the review page's Chinese) the camera, or
    its ``main_stream``, delivers pictures again, and after how long."""
    at = datetime.fromtimestamp(event.back_wall, timezone)
    down_min = (event.back_wall - event.since_wall) / 60
    what = " 的主码流" if main_stream else " "
    return CaseNote(note_id=f"{event.case_id}:recovered", case_id=event.case_id,
                    at_wall=at.isoformat(timespec="milliseconds"), author="system", kind="camera_recovered",
                    text=f"摄像头 {camera_id}{what}中断 {down_min:.1f} 分钟后已恢复画面。")


CAMERA_DOWN = "camera_down"  # the note filed with a camera's fault case
MAIN_STREAM = "main_stream"  # the cause of a main stream's fault case, and its note's kind


def camera_down_note(fault: CameraFault, camera_id: str, timezone: ZoneInfo) -> CaseNote:
    """The note that tells a camera's fault case's reviewer, in Chinese, what is wrong and what it costs."""
    at = datetime.fromtimestamp(fault.filed_wall, timezone)
    down_min = (fault.filed_wall - fault.since_wall) / 60
    # no clock time in the text: the page shows the case's times in its display time zone
    return CaseNote(note_id=f"{fault.case_id}:{CAMERA_DOWN}", case_id=fault.case_id,
                    at_wall=at.isoformat(timespec="milliseconds"), author="system", kind=CAMERA_DOWN,
                    text=f"摄像头 {camera_id} 已 {down_min:.1f} 分钟没有画面（{CameraState(fault.state).label}："
                         f"{fault.reason}）。此期间该处的违规无法发现，系统仍在自动重连：请安排检修摄像头及其网络和供电。")


def main_stream_note(fault: CameraFault, camera_id: str, timezone: ZoneInfo) -> CaseNote:
    """The note that tells a main stream's fault case's reviewer what failed: not the camera."""
    at, since = (datetime.fromtimestamp(wall, timezone) for wall in (fault.filed_wall, fault.since_wall))
    return CaseNote(note_id=f"{fault.case_id}:{MAIN_STREAM}", case_id=fault.case_id,
                    at_wall=at.isoformat(timespec="milliseconds"), author="system", kind=MAIN_STREAM,
                    text=f"摄像头 {camera_id} 的主码流自 {since:%Y-%m-%d %H:%M:%S} 起未录到画面"
                         f"（{fault.reason}）。子码流分析照常，案件照常上报，但证据图片和视频取自子码流，"
                         f"清晰度不足以辨认车牌：请安排检修摄像头的主码流。")


def spool_faults(outage: SpoolOutage) -> list[tuple[CameraInfo, CameraFault, CaseNote]]:
    """For each camera whose cases waited in memory during ``outage``: its fault case (no picture:
    the camera was fine) and the note that tells its reviewer why those cases came late. The same
    outage gives the same ids and bytes, so filing it again files nothing new."""
    by_camera: dict[str, list[CaseRecord]] = {}
    for record in outage.waited.values():
        by_camera.setdefault(record.camera_id, []).append(record)
    state = "disk_full" if outage.disk_full else "spool_unwritable"
    found = []
    for camera_id, records in by_camera.items():
        camera = CameraInfo(camera_id, records[0].camera_name, dict(records[0].location))
        since, until = (datetime.fromtimestamp(t, camera.timezone) for t in (outage.since_wall, outage.until_wall))
        minutes = (outage.until_wall - outage.since_wall) / 60
        reason = (f"the evidence spool took no case ({outage.reason}) from {since:%Y-%m-%d %H:%M:%S} for "
                  f"{minutes:.1f} min: {len(records)} case(s) of camera {camera_id} waited in memory and were "
                  f"all written by {until:%H:%M:%S}, so they reached review late; the camera itself was fine")
        full = "磁盘已满" if outage.disk_full else "无法写入"
        told = (f"{since:%Y-%m-%d %H:%M:%S} 起 {minutes:.1f} 分钟，工作站的证据暂存目录{full}（{outage.reason}）："
                f"摄像头 {camera_id} 的 {len(records)} 个案件在内存中等待，已于 {until:%H:%M:%S} 全部写入，"
                f"因此较晚进入审核。摄像头本身正常；请检查工作站的磁盘（{outage.path}）。")
        case_id = fault_case_id(camera_id, outage.since_wall, cause="spool_outage")
        spool = {"path": outage.path, "reason": outage.reason, "disk_full": outage.disk_full,
                 "since_wall": outage.since_wall, "until_wall": outage.until_wall,
                 "waited": len(records), "written": len(records), "case_ids": [r.case_id for r in records]}
        fault = CameraFault(case_id=case_id, since_wall=outage.since_wall, filed_wall=outage.until_wall,
                            stream_s=0.0, state=state, reason=reason, last_frame=None, details={"spool": spool})
        note = CaseNote(note_id=f"{case_id}:spool_outage", case_id=case_id,
                        at_wall=until.isoformat(timespec="milliseconds"), author="system", kind="spool_outage",
                        text=told)
        found.append((camera, fault, note))
    return found
