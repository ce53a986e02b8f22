"""Camera faults: a live camera without video past its threshold becomes one 故障报警 case."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DOWN_STATES = frozenset({"connecting", "offline", "stalled"})


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

    def observe(self, state: str, now_wall: float) -> FileFault | Recovered | None:
        if state == "live":
            down_since, self.down_since = self.down_since, None
            if self.filed_case is not None and down_since is not None:
                case_id, self.filed_case = self.filed_case, None
                return Recovered(case_id, down_since, now_wall)
            return None
        if state not in DOWN_STATES:  # ended, failed, stopped: not an outage of a live camera
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
