"""Per-camera health figures that stay true: rates over a sliding window, so a dead stream reads 0.

The same figures feed the ``[health]`` lines and the Prometheus ``/metrics`` endpoint. Totals are
exported as counters (for ``rate()``/``increase()`` in Prometheus); the windowed rates, lag and
per-hour counts as gauges, for a person reading the endpoint or the log without a query language.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as PrometheusMetric
from prometheus_client.registry import Collector

from pipeline.vocabulary import CameraState, Metric


@dataclass(frozen=True)
class Counters:
    """Totals of one camera at one moment."""

    received: int = 0
    analysed: int = 0
    skipped: int = 0
    decode_s: float = 0.0  # seconds spent decoding the received frames
    inference_s: float = 0.0  # this camera's share of batched inference
    gated: int = 0  # analysed frames on which motion gating spared the network
    passed_over: int = 0  # sampled frames the adaptive rate left unanalysed while every zone was still


@dataclass(frozen=True)
class Rates:
    """A camera's rates over the last window: what a stream that died reads as 0."""

    received_fps: float = 0.0
    analysed_fps: float = 0.0
    skipped_fps: float = 0.0
    gated_fps: float = 0.0
    analysed_share: float = 1.0  # of the frames sampled at the analysis fps: the others were passed over
    decode_ms: float = 0.0  # per received frame
    inference_ms: float = 0.0  # per analysed frame


class RateWindow:
    """Rates of a camera's counters over the last ``window_s`` seconds of samples."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, Counters]] = deque()

    def sample(self, counters: Counters, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, counters))
        # keep one sample at or before the window's start, so the span always covers the window
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rates(self) -> Rates:
        if len(self._samples) < 2:
            return Rates()
        (then, old), (now, new) = self._samples[0], self._samples[-1]
        span = max(now - then, 1e-9)
        received, analysed = new.received - old.received, new.analysed - old.analysed
        sampled = analysed + new.passed_over - old.passed_over
        return Rates(
            received_fps=received / span,
            analysed_fps=analysed / span,
            skipped_fps=(new.skipped - old.skipped) / span,
            gated_fps=(new.gated - old.gated) / span,
            analysed_share=analysed / sampled if sampled else 1.0,
            decode_ms=1000 * (new.decode_s - old.decode_s) / received if received else 0.0,
            inference_ms=1000 * (new.inference_s - old.inference_s) / analysed if analysed else 0.0,
        )


@dataclass(frozen=True)
class InputReport:
    """One input of a camera with a sub-stream: ``sub`` (decoded, analysed) or ``main`` (recorded)."""

    name: str
    state: str
    state_since: float  # wall clock
    packets_fps: float  # packets received per second over the last few seconds
    reconnects: int
    stalls: int
    last_error: str | None


@dataclass(frozen=True)
class CameraReport:
    camera_id: str
    state: str
    state_since: float  # wall clock
    counters: Counters
    rates: Rates
    lag_s: float | None  # wall time from decode to the end of analysis of its latest frame
    last_frame_wall: float | None
    reconnects: int
    stalls: int
    corrupt: int
    reconnects_last_hour: int
    stalls_last_hour: int
    last_error: str | None
    analysis_rate_fps: float | None = None  # the rate analysed at now, on cameras with the adaptive rate on
    inputs: tuple[InputReport, ...] = ()  # cameras with a sub-stream: each input on its own
    clock_offset_s: float | None = None  # main-stream time minus sub-stream time now, while both are connected


@dataclass(frozen=True)
class PatrolReport:
    cameras: list[CameraReport]
    cases_filed: int  # new cases that reached the queue since start
    spool_entries: int  # cases waiting on local disk for a backend
    backend_error: str | None  # why the spool is not draining, while it is not
    spool_path: str = ""  # this worker's spool folder
    spool_rejected: int = 0  # undeliverable (malformed) entries set aside in the spool's rejected folder
    spool_held: int = 0  # cases in memory that the spool could not take yet
    spool_error: str | None = None  # why the spool takes no case, while it does not
    disk_full: bool = False  # the spool's disk, while it is full


def health_line(report: CameraReport) -> str:
    rates = report.rates
    lag = f"{report.lag_s:.2f}s" if report.lag_s is not None else "-"
    line = (f"[health] {report.camera_id} {report.state} in={rates.received_fps:.1f}/s "
            f"analysed={rates.analysed_fps:.1f}/s skipped={rates.skipped_fps:.1f}/s "
            f"decode={rates.decode_ms:.1f}ms infer={rates.inference_ms:.1f}ms lag={lag} "
            f"reconnects={report.reconnects} stalls={report.stalls} corrupt={report.corrupt}")
    if report.counters.gated:  # only cameras with motion gating on
        line += f" gated={rates.gated_fps:.1f}/s"
    if report.analysis_rate_fps is not None:  # only cameras with the adaptive rate on
        line += f" rate={report.analysis_rate_fps:g}/s analysed-share={rates.analysed_share:.0%}"
    for put in report.inputs:  # cameras with a sub-stream: the recorded main stream's own state and figures
        line += f" {put.name}={put.state}"
        if put.name != "sub":
            line += f" {put.name}-in={put.packets_fps:.1f}/s {put.name}-reconnects={put.reconnects}"
    if report.clock_offset_s is not None:
        line += f" clock={report.clock_offset_s:+.3f}s"
    if report.state != CameraState.LIVE and report.last_error:  # while reconnecting too: why it is not live
        line += f" error: {report.last_error}"
    for put in report.inputs:
        if put.name != "sub" and put.state != CameraState.LIVE and put.last_error:
            line += f" {put.name}-error: {put.last_error}"
    return line


def spool_line(report: PatrolReport) -> str | None:
    """The worker's own line, while any case is not delivered or was set aside."""
    if not (report.spool_entries or report.backend_error or report.spool_held or report.spool_error
            or report.spool_rejected):
        return None
    line = f"[health] spool {report.spool_entries} case(s) waiting"
    if report.backend_error:
        line += f"; delivery failing: {report.backend_error}"
    if report.spool_held or report.spool_error:
        why = f": {report.spool_error}" if report.spool_error else ""
        line += f"; {report.spool_held} case(s) held in memory{why}"
    if report.spool_rejected:
        line += f"; {report.spool_rejected} undeliverable set aside in {report.spool_path}/rejected"
    return line


class PatrolCollector(Collector):
    """Prometheus collector that reads the patrol's figures at scrape time (no second bookkeeping)."""

    def __init__(self, report: Callable[[], PatrolReport]) -> None:
        self._report = report

    def collect(self) -> Iterator[PrometheusMetric]:
        report = self._report()
        cams = report.cameras
        yield _gauge(Metric.CAMERA_STATE, "1 for the camera's current state, 0 for the others",
                     ((c.camera_id, s.value, float(c.state == s)) for c in cams for s in CameraState),
                     ("camera", "state"))
        yield _gauge(Metric.CAMERA_STATE_SINCE, "Unix time the camera entered its current state",
                     ((c.camera_id, c.state_since) for c in cams))
        for name, key, help_text in (
            (Metric.RECEIVED_FPS, "received_fps", "Frames decoded per second over the last window"),
            (Metric.ANALYSED_FPS, "analysed_fps", "Frames analysed per second over the last window"),
            (Metric.SKIPPED_FPS, "skipped_fps", "Analysis frames replaced by a newer one per second"),
            (Metric.GATED_FPS, "gated_fps", "Analysed frames per second that motion gating spared the network"),
            (Metric.ANALYSED_SHARE, "analysed_share", "Share of the frames sampled at the analysis fps that were "
             "analysed over the last window (the adaptive rate passes the others over while the zones are still)"),
            (Metric.DECODE_MS, "decode_ms", "Milliseconds of decoding per received frame"),
            (Metric.INFERENCE_MS, "inference_ms", "Milliseconds of inference per analysed frame"),
        ):
            yield _gauge(name, help_text, ((c.camera_id, getattr(c.rates, key)) for c in cams))
        yield _gauge(Metric.ANALYSIS_RATE, "Frames per second the camera is analysed at now: its analysis fps, or "
                     "its still_fps while every zone is still (cameras with the adaptive rate on)",
                     ((c.camera_id, c.analysis_rate_fps) for c in cams if c.analysis_rate_fps is not None))
        yield _gauge(Metric.INPUT_STATE, "Cameras with a sub-stream: 1 for each input's current state (input sub: "
                     "analysed, main: recorded), 0 for the others",
                     ((c.camera_id, i.name, s.value, float(i.state == s)) for c in cams for i in c.inputs
                      for s in CameraState), ("camera", "input", "state"))
        yield _gauge(Metric.INPUT_PACKETS_FPS, "Cameras with a sub-stream: packets each input received per second "
                     "over the last window", ((c.camera_id, i.name, i.packets_fps) for c in cams for i in c.inputs),
                     ("camera", "input"))
        yield _gauge(Metric.CLOCK_OFFSET, "Cameras with a sub-stream: main-stream time minus sub-stream time, as "
                     "reconciled from the arrival of their packets",
                     ((c.camera_id, c.clock_offset_s) for c in cams if c.clock_offset_s is not None))
        inputs = CounterMetricFamily(Metric.INPUT_RECONNECTS, "Cameras with a sub-stream: reconnects of each input",
                                     labels=("camera", "input"))
        for camera in cams:
            for put in camera.inputs:
                inputs.add_metric((camera.camera_id, put.name), put.reconnects)
        yield inputs
        yield _gauge(Metric.LAG, "Decode-to-analysed latency of the latest analysed frame",
                     ((c.camera_id, c.lag_s) for c in cams if c.lag_s is not None))
        yield _gauge(Metric.LAST_FRAME, "Unix time of the last decoded frame",
                     ((c.camera_id, c.last_frame_wall) for c in cams if c.last_frame_wall is not None))
        yield _gauge(Metric.RECONNECTS_LAST_HOUR, "Reconnects in the last hour",
                     ((c.camera_id, c.reconnects_last_hour) for c in cams))
        yield _gauge(Metric.STALLS_LAST_HOUR, "Stalls (connected, no frames) in the last hour",
                     ((c.camera_id, c.stalls_last_hour) for c in cams))
        for name, help_text, value in (
            (Metric.FRAMES_RECEIVED, "Frames decoded", lambda c: c.counters.received),
            (Metric.FRAMES_ANALYSED, "Frames analysed", lambda c: c.counters.analysed),
            (Metric.FRAMES_SKIPPED, "Analysis frames replaced by a newer one", lambda c: c.counters.skipped),
            (Metric.FRAMES_GATED, "Analysed frames on which motion gating spared the network",
             lambda c: c.counters.gated),
            (Metric.FRAMES_PASSED_OVER, "Sampled frames the adaptive rate left unanalysed while every zone was still",
             lambda c: c.counters.passed_over),
            (Metric.RECONNECTS, "Reconnects", lambda c: c.reconnects),
            (Metric.STALLS, "Stalls", lambda c: c.stalls),
            (Metric.CORRUPT_PACKETS, "Packets the decoder rejected", lambda c: c.corrupt),
        ):
            family = CounterMetricFamily(name, help_text, labels=("camera",))
            for camera in cams:
                family.add_metric((camera.camera_id,), value(camera))
            yield family
        cases = CounterMetricFamily(Metric.CASES_FILED, "New cases that reached the case queue")
        cases.add_metric((), report.cases_filed)
        yield cases
        yield _gauge(Metric.SPOOL_ENTRIES, "Cases on local disk waiting for the backends",
                     [(report.spool_entries,)], ())
        yield _gauge(Metric.BACKENDS_UP, "1 while the case queue and evidence store accept deliveries",
                     [(float(report.backend_error is None),)], ())
        rejected = CounterMetricFamily(Metric.SPOOL_REJECTED, "Undeliverable (malformed) spool entries set aside "
                                       "in the spool's rejected folder")
        rejected.add_metric((), report.spool_rejected)
        yield rejected
        yield _gauge(Metric.SPOOL_HELD, "Cases held in memory because the spool could not take them",
                     [(report.spool_held,)], ())
        yield _gauge(Metric.SPOOL_DISK_FULL, "1 while the spool's disk is full: new cases wait in memory",
                     [(report.spool_path, float(report.disk_full))], ("path",))


def serve_metrics(address: str, report: Callable[[], PatrolReport]) -> str | None:
    """Serves ``/metrics`` on ``address`` (HOST:PORT, port 0 picks one) in a daemon thread; returns its
    URL, or None when ``address`` is ``off``. ValueError names what is wrong with the address."""
    if address == "off":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected HOST:PORT (port 0 picks a free one) or off")
    registry = CollectorRegistry()
    registry.register(PatrolCollector(report))
    ProcessCollector(registry=registry)  # memory, open fds, CPU: what a weeks-long run must keep flat
    try:
        server, _ = start_http_server(int(port), addr=host, registry=registry)
    except OSError as exc:
        raise ValueError(f"cannot listen there: {exc.strerror or exc}") from exc
    return f"http://{host}:{server.server_port}/metrics"


def _gauge(name: str, help_text: str, rows: Iterable[tuple], labels: tuple[str, ...] = ("camera",)
           ) -> PrometheusMetric:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for *label_values, value in rows:
        family.add_metric(label_values, value)
    return family
