"""Camera faults: a live camera without video past its threshold becomes one 故障报警 case, and
a note on that case when its video comes back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.evidence.render import CameraFault
from pipeline.ingest import StateChange
from pipeline.types import CaseNote, Frame
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

    def __init__(self, camera_id: str, threshold_s: float, started_wall: float) -> None:
        self.camera_id = camera_id
        self.threshold_s = threshold_s
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
            self.filed_case = fault_case_id(self.camera_id, self.down_since)
            return FileFault(self.filed_case, self.down_since)
        return None


def fault_case_id(camera_id: str, since_wall: float) -> str:
    """``F-`` and 16 hex digits: one id per camera and outage start (to the millisecond)."""
    key = f"camera_fault|{camera_id}|{round(since_wall * 1000)}"
    return f"F-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def fault_case(event: FileFault, now_wall: float, *, state: str, reason: str, stream_s: float,
               last_frame: Frame | None, history: list[StateChange]) -> CameraFault:
    """The fault case to file for ``event``: the camera's last picture and recent state changes."""
    return CameraFault(case_id=event.case_id, since_wall=event.since_wall, filed_wall=now_wall, stream_s=stream_s,
                       state=state, reason=reason, last_frame=last_frame,
                       history=tuple((c.old, c.new, c.wall_ts, c.reason) for c in history[-20:]))


def recovery_note(event: Recovered, camera_id: str, timezone: ZoneInfo) -> CaseNote:
    """The note that tells the fault case's reviewer the camera is back, and after how long."""
    at = datetime.fromtimestamp(event.back_wall, timezone)
    down_min = (event.back_wall - event.since_wall) / 60
    return CaseNote(note_id=f"{event.case_id}:recovered", case_id=event.case_id,
                    at_wall=at.isoformat(timespec="milliseconds"), author="system", kind="camera_recovered",
                    text=f"camera {camera_id} delivers video again after {down_min:.1f} min without")
