"""The words every stage shares: kinds of case, camera states, metric names.

A new violation kind is one row of ``ViolationKind`` here, its rule's config model
(``pipeline/config/rules.py``), its row in the event-code table
(``pipeline/evidence/event_codes.yaml``) and its label for officers (``pipeline/review/vocabulary.py``).
"""

from __future__ import annotations

from enum import StrEnum

from pipeline.types import Role


class ViolationKind(StrEnum):
    """What a case is about: the rule type that filed it (or a camera fault).

    Each kind carries the letter its case ids start with, the role of the object it concerns
    (what a confirmed case teaches the detector) and whether its evidence reads a plate.
    """

    letter: str
    role: Role | None
    reads_plate: bool

    def __new__(cls, value: str, letter: str, role: Role | None, reads_plate: bool) -> ViolationKind:
        kind = str.__new__(cls, value)
        kind._value_ = value
        kind.letter, kind.role, kind.reads_plate = letter, role, reads_plate
        return kind

    ILLEGAL_PARKING = ("illegal_parking", "P", Role.VEHICLE, True)
    STALL_ENCROACHMENT = ("stall_encroachment", "S", Role.STALL, False)
    BIN_OVERFLOW = ("bin_overflow", "G", Role.OVERFLOWING_BIN, False)
    NONMOTOR_PARKING = ("nonmotor_parking", "B", Role.NON_MOTOR_VEHICLE, False)  # B: bikes, e-bikes
    CAMERA_FAULT = ("camera_fault", "F", None, False)  # 故障报警: filed by the patrol, not by a rule

    @classmethod
    def known(cls, value: str) -> ViolationKind | None:
        """The kind named ``value``; None for a name this version does not know (a newer worker's)."""
        try:
            return cls(value)
        except ValueError:
            return None


class CameraState(StrEnum):
    """Where a camera's decode thread stands (see ``pipeline/ingest/live.py`` for the transitions)."""

    CONNECTING = "connecting"
    LIVE = "live"
    STALLED = "stalled"
    OFFLINE = "offline"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def running(self) -> bool:
        """Still trying to deliver pictures (a file that ended or failed, or a stopped camera, is not)."""
        return self in (CameraState.CONNECTING, CameraState.LIVE, CameraState.STALLED, CameraState.OFFLINE)

    @property
    def down(self) -> bool:
        """A live camera without video: what its outage clock counts."""
        return self in (CameraState.CONNECTING, CameraState.OFFLINE, CameraState.STALLED)

    @property
    def label(self) -> str:
        """The state as the officers' pages and the system's notes name it."""
        return _CAMERA_STATE_LABELS[self]


_CAMERA_STATE_LABELS = {
    CameraState.CONNECTING: "连接中",
    CameraState.LIVE: "在线",
    CameraState.STALLED: "卡顿",
    CameraState.OFFLINE: "离线",
    CameraState.ENDED: "已结束",
    CameraState.FAILED: "故障",
    CameraState.STOPPED: "已停止",
}


class Metric(StrEnum):
    """The workers' Prometheus metric names: exported by ``pipeline/engine/health.py``, read back
    by the review service's camera list."""

    CAMERA_STATE = "patrol_camera_state"
    CAMERA_STATE_SINCE = "patrol_camera_state_since_seconds"
    RECEIVED_FPS = "patrol_camera_received_fps"
    ANALYSED_FPS = "patrol_camera_analysed_fps"
    SKIPPED_FPS = "patrol_camera_skipped_fps"
    GATED_FPS = "patrol_camera_gated_fps"
    ANALYSED_SHARE = "patrol_camera_analysed_share"
    ANALYSIS_RATE = "patrol_camera_analysis_rate_fps"
    DECODE_MS = "patrol_camera_decode_ms"
    INFERENCE_MS = "patrol_camera_inference_ms"
    LAG = "patrol_camera_lag_seconds"
    LAST_FRAME = "patrol_camera_last_frame_timestamp_seconds"
    RECONNECTS_LAST_HOUR = "patrol_camera_reconnects_last_hour"
    STALLS_LAST_HOUR = "patrol_camera_stalls_last_hour"
    FRAMES_RECEIVED = "patrol_camera_frames_received"
    FRAMES_ANALYSED = "patrol_camera_frames_analysed"
    FRAMES_SKIPPED = "patrol_camera_frames_skipped"
    FRAMES_GATED = "patrol_camera_frames_gated"
    FRAMES_PASSED_OVER = "patrol_camera_frames_passed_over"
    RECONNECTS = "patrol_camera_reconnects"
    STALLS = "patrol_camera_stalls"
    CORRUPT_PACKETS = "patrol_camera_corrupt_packets"
    # cameras with a sub-stream (detect_url): each input, labelled input="sub" (analysed) or "main" (recorded)
    INPUT_STATE = "patrol_camera_input_state"
    INPUT_PACKETS_FPS = "patrol_camera_input_packets_fps"
    INPUT_RECONNECTS = "patrol_camera_input_reconnects"
    CLOCK_OFFSET = "patrol_camera_clock_offset_seconds"
    CASES_FILED = "patrol_cases_filed"
    SPOOL_ENTRIES = "patrol_spool_entries"
    SPOOL_REJECTED = "patrol_spool_rejected"
    SPOOL_HELD = "patrol_spool_held"
    SPOOL_DISK_FULL = "patrol_spool_disk_full"
    BACKENDS_UP = "patrol_backends_up"
