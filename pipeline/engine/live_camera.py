"""A camera of a live patrol: its analysis state, its decode thread, its health and its fault clock."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from pipeline.engine.camera import CameraPipeline
from pipeline.engine.faults import (
    FaultWatch,
    FileFault,
    Recovered,
    camera_down_note,
    fault_case,
    main_stream_note,
    recovery_note,
)
from pipeline.engine.health import CameraReport, Counters, InputReport, RateWindow
from pipeline.evidence.render import CameraFault
from pipeline.ingest import LiveSource, StateChange, SubMainSource
from pipeline.types import CaseNote
from pipeline.vocabulary import CameraState


class CameraEvents:
    """Times of a camera's reconnects and stalls over the last hour, from its state changes."""

    def __init__(self) -> None:
        self.reconnects: deque[float] = deque(maxlen=100_000)
        self.stalls: deque[float] = deque(maxlen=100_000)

    def record(self, change: StateChange) -> None:
        if change.new == CameraState.OFFLINE:
            self.reconnects.append(change.wall_ts)
        elif change.new == CameraState.STALLED:
            self.stalls.append(change.wall_ts)

    @staticmethod
    def last_hour(times: deque[float], now: float) -> int:
        return sum(1 for t in list(times) if t > now - 3600)


@dataclass(eq=False)
class PatrolCamera:
    """A camera of a live patrol: its analysis state, its decode thread (see LiveSource), its health."""

    pipeline: CameraPipeline
    source: LiveSource
    events: CameraEvents
    faults: FaultWatch | None  # None for file sources: a file is no camera that can fail
    stop: threading.Event  # this camera's own: a fleet worker hands single cameras over
    rates: RateWindow = field(default_factory=RateWindow)
    lag_s: float | None = None
    main_faults: FaultWatch | None = None  # a live camera with a sub-stream: its main stream's outage clock

    @property
    def camera_id(self) -> str:
        return self.pipeline.camera.id

    @property
    def state(self) -> str:
        return self.source.state

    @property
    def last_error(self) -> str | None:
        return self.source.last_error

    @property
    def running(self) -> bool:
        return self.source.running

    def counters(self) -> Counters:
        stats = self.pipeline.stats
        return Counters(stats.received, stats.analysed, stats.skipped, stats.decode_s, self.pipeline.inference_s,
                        self.pipeline.gated, self.pipeline.passed_over)

    def report(self, now: float) -> CameraReport:
        stats = self.pipeline.stats
        return CameraReport(
            camera_id=self.camera_id, state=self.state, state_since=self.source.state_since,
            counters=self.counters(), rates=self.rates.rates(), lag_s=self.lag_s,
            last_frame_wall=stats.last_frame_wall, reconnects=stats.reconnects, stalls=stats.stalls,
            corrupt=stats.corrupt, reconnects_last_hour=CameraEvents.last_hour(self.events.reconnects, now),
            stalls_last_hour=CameraEvents.last_hour(self.events.stalls, now), last_error=self.last_error,
            analysis_rate_fps=None if self.pipeline.rate is None else self.pipeline.analysis_fps,
            **self._inputs())

    def _inputs(self) -> dict:
        """A camera with a sub-stream: each input's state and figures, and the offset between their clocks."""
        source = self.source
        if not isinstance(source, SubMainSource):
            return {}
        sides = (("sub", source, source.dual.sub), ("main", source.main, source.dual.main))
        inputs = tuple(InputReport(name, put.state, put.state_since, ring.packets_fps(), put.stats.reconnects,
                                   put.stats.stalls, put.last_error) for name, put, ring in sides)
        newest = source.dual.sub.newest_s
        offset = None if newest is None or source.main.state != CameraState.LIVE else source.dual.offset(newest)
        return {"inputs": inputs, "clock_offset_s": None if offset is None else offset.main_minus_sub_s}

    def check_faults(self, now_wall: float) -> tuple[CameraFault, CaseNote] | CaseNote | None:
        """The fault case and the note saying what failed, to file when the camera has been without
        video past its threshold; the note for that case when video is back; else None."""
        if self.faults is None:
            return None
        found = self._outage(self.faults, self.source, now_wall)
        if isinstance(found, CameraFault):
            return found, camera_down_note(found, self.camera_id, self.pipeline.camera.tz)
        return found

    def check_main_stream(self, now_wall: float) -> tuple[CameraFault, CaseNote] | CaseNote | None:
        """A camera with a sub-stream: the fault case and the note saying what failed, to file when its
        main stream has recorded nothing past the threshold while the camera itself is live; the
        note for that case when the main stream is back."""
        if self.main_faults is None or self.state != CameraState.LIVE:
            return None  # a camera without video is the camera's fault case, not its main stream's
        found = self._outage(self.main_faults, self.source.main, now_wall, input_name="main")
        if isinstance(found, CameraFault):
            return found, main_stream_note(found, self.camera_id, self.pipeline.camera.tz)
        return found

    def _outage(self, watch: FaultWatch, put, now_wall: float, input_name: str | None = None
                ) -> CameraFault | CaseNote | None:
        """``watch`` observing the input ``put`` (the camera's source, or its main stream's
        ``input_name``): its fault case past the threshold, its note when back, else None."""
        event = watch.observe(put.state, now_wall)
        if isinstance(event, FileFault):
            state = CameraState(put.state).value
            return fault_case(event, now_wall, state=f"{input_name}_{state}" if input_name else state,
                              reason=put.last_error or state, stream_s=self.source.stats.stream_s or 0.0,
                              last_frame=self.pipeline.last_frame, history=list(put.history))
        if isinstance(event, Recovered):
            return recovery_note(event, self.camera_id, self.pipeline.camera.tz, main_stream=input_name is not None)
        return None
