"""Camera-fault cases and health figures, apart from any stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from queue_contract import LOCATION

from pipeline.engine.faults import FaultWatch, FileFault, Recovered
from pipeline.engine.health import (
    CameraReport,
    Counters,
    PatrolCollector,
    PatrolReport,
    Rates,
    RateWindow,
    spool_line,
)
from pipeline.evidence import CameraInfo, EvidenceRenderer, LocalEvidenceStore, load_event_codes
from pipeline.evidence.render import CameraFault
from pipeline.types import Frame

T0 = 1_700_000_000.0


def test_outage_files_one_fault_case_after_the_threshold_and_a_recovery_when_back() -> None:
    watch = FaultWatch("cam-1", threshold_s=300, started_wall=T0)
    assert watch.observe("live", T0 + 1) is None
    assert watch.observe("offline", T0 + 10) is None
    # reconnect attempts go on; the outage clock does not restart with them
    assert watch.observe("connecting", T0 + 200) is None
    assert watch.observe("offline", T0 + 309) is None
    filed = watch.observe("offline", T0 + 310)
    assert isinstance(filed, FileFault) and filed.since_wall == T0 + 10
    assert watch.observe("connecting", T0 + 900) is None  # one case per outage
    back = watch.observe("live", T0 + 1000)
    assert back == Recovered(filed.case_id, T0 + 10, T0 + 1000)
    assert watch.observe("live", T0 + 1001) is None

    watch.observe("stalled", T0 + 2000)
    second = watch.observe("offline", T0 + 2300)
    assert isinstance(second, FileFault) and second.case_id != filed.case_id


def test_short_outage_and_file_sources_file_nothing() -> None:
    watch = FaultWatch("cam-1", threshold_s=300, started_wall=T0)
    watch.observe("live", T0)
    assert watch.observe("offline", T0 + 5) is None
    assert watch.observe("live", T0 + 200) is None  # back before the threshold: no case, no note
    assert watch.observe("ended", T0 + 10_000) is None
    assert watch.observe("failed", T0 + 20_000) is None


def test_camera_that_never_connects_files_a_fault_from_the_start() -> None:
    watch = FaultWatch("cam-1", threshold_s=60, started_wall=T0)
    assert watch.observe("connecting", T0 + 30) is None
    assert isinstance(watch.observe("offline", T0 + 61), FileFault)


def test_fault_case_carries_the_last_picture_and_the_outage(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    renderer = EvidenceRenderer(load_event_codes(), "0.1.0")
    camera = CameraInfo("cam-1", "双山大街北口", dict(LOCATION))
    picture = np.full((360, 640, 3), 90, np.uint8)
    fault = CameraFault(case_id="F-0123456789abcdef", since_wall=T0, filed_wall=T0 + 300, stream_s=812.4,
                        state="offline", reason="camera cam-1: cannot open rtsp://x: Connection refused",
                        last_frame=Frame("cam-1", 4061, 812.2, T0 - 0.2, picture),
                        history=(("live", "offline", T0, "connection reset"),))

    case = renderer.render_camera_fault(fault, camera=camera, model={"name": "m", "sha256": "0" * 64})
    case.store_into(store)
    record = case.record

    assert (record.violation, record.event_code, record.event_name) == ("camera_fault", "0601", "故障报警")
    assert record.dwell_s == 300 and record.bbox == (0.0, 0.0, 640.0, 360.0)
    assert record.first_seen_wall.startswith("2023-11-15T06:13:20")  # T0 in Asia/Shanghai
    assert set(record.evidence) == {"last_frame.jpg", "metadata.json"}
    for item in record.evidence.values():
        assert store.sha256_of(item.key) == item.sha256
    metadata = json.loads(store.get(record.evidence["metadata.json"].key))
    assert metadata["fault"]["reason"].endswith("Connection refused")
    assert metadata["fault"]["history"] == [["live", "offline", T0, "connection reset"]]


def test_rates_fall_to_zero_when_a_stream_dies() -> None:
    window = RateWindow(window_s=5)
    for second in range(11):  # 15 fps in, 5 analysed, 2 ms decode per frame
        window.sample(Counters(15 * second, 5 * second, 0, 0.030 * second, 0.050 * second), now=float(second))
    live = window.rates()
    assert live.received_fps == 15 and live.analysed_fps == 5
    assert round(live.decode_ms, 6) == 2.0 and round(live.inference_ms, 6) == 10.0

    for second in range(11, 17):  # the stream died at 10 s
        window.sample(Counters(150, 50, 0, 0.3, 0.5), now=float(second))
    dead = window.rates()
    assert dead.received_fps == 0 and dead.analysed_fps == 0 and dead.decode_ms == 0


def test_metrics_endpoint_text_names_each_camera_and_its_state() -> None:
    report = PatrolReport(
        cameras=[CameraReport("cam-1", "offline", T0, Counters(150, 50, 3, 0.3, 0.5),
                              Rates(), 0.08, T0 - 5, 4, 1, 2, 4, 1, "connection refused")],
        cases_filed=7, spool_entries=2, backend_error="redis 127.0.0.1:6379 unreachable")
    registry = CollectorRegistry()
    registry.register(PatrolCollector(lambda: report))
    text = generate_latest(registry).decode()

    assert 'patrol_camera_state{camera="cam-1",state="offline"} 1.0' in text
    assert 'patrol_camera_state{camera="cam-1",state="live"} 0.0' in text
    assert 'patrol_camera_received_fps{camera="cam-1"} 0.0' in text
    assert 'patrol_camera_frames_received_total{camera="cam-1"} 150.0' in text
    assert 'patrol_camera_reconnects_last_hour{camera="cam-1"} 4.0' in text
    assert "patrol_cases_filed_total 7.0" in text
    assert "patrol_spool_entries 2.0" in text
    assert "patrol_backends_up 0.0" in text


def test_a_full_spool_disk_and_set_aside_cases_show_on_the_health_line_and_in_metrics() -> None:
    report = PatrolReport(cameras=[], cases_filed=7, spool_entries=0, backend_error=None, spool_path="/var/spool",
                          spool_rejected=2, spool_held=3, spool_error="disk full at /var/spool", disk_full=True)
    registry = CollectorRegistry()
    registry.register(PatrolCollector(lambda: report))
    text = generate_latest(registry).decode()

    assert 'patrol_spool_disk_full{path="/var/spool"} 1.0' in text
    assert "patrol_spool_held 3.0" in text
    assert "patrol_spool_rejected_total 2.0" in text
    line = spool_line(report)
    assert "3 case(s) held in memory: disk full at /var/spool" in line
    assert "2 undeliverable set aside in /var/spool/rejected" in line
    assert spool_line(PatrolReport([], 7, 0, None, spool_path="/var/spool")) is None
