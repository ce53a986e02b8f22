"""Accelerated soak: two fleet workers over several live cameras for hours, with faults on a schedule.

    python -m benchmarks.soak --hours 2 --cameras 6 --fault-every 5   # benchmarks/results/soak.{csv,json,png}, soak-fds-threads.png

Not part of CI. It starts its own redis-server and loopback RTSP server (the test servers: the
Debian packages `make test` installs), renders nothing (the cameras are the shipped sample street
served as live cameras, looping: 4 violation episodes per camera every 150 s), and runs two
`patrol run --fleet` worker processes. Every minute it writes one CSV row per worker: resident
memory, open file descriptors, threads, cameras held, the worst camera lag from its /metrics, and
the cases filed so far. The faults, in turn, every ``--fault-every`` minutes:

- worker w1 is killed (SIGKILL) and started again 20 s later, as systemd would: its cameras go
  to w2 within the lease TTL and come back when w1 has rejoined;
- Redis is stopped for 30 s (cases wait in the workers' spools; the leases lapse, and each worker
  re-claims its own when Redis is back);
- the RTSP server is restarted (every camera drops and reconnects).

w2 is never restarted, so its memory, descriptors and threads over the whole run show whether the
worker leaks. Cases are compared with what the looping sample can give: at most 4 per camera per
150 s loop watched; more than that are duplicates.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import machine
from benchmarks.plot import line_chart
from pipeline.queue import open_queue
from pipeline.types import BackendUnavailable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the loopback servers the tests start
from fixture_redis import RedisServer, free_port
from fixture_rtsp import RtspServer

SAMPLE = REPO / "streams" / "samples" / "sample-street.mp4"
LOOP_S = 150.0
EPISODES_PER_LOOP = 4
RESULTS = REPO / "benchmarks" / "results"


class Worker:
    """One `patrol run --fleet` process; started again under the same name and spool after a kill."""

    def __init__(self, name: str, cameras: Path, redis_url: str, root: Path, capacity: int, ttl_s: float) -> None:
        self.name = name
        self.metrics = f"127.0.0.1:{free_port()}"
        self.command = [str(REPO / ".venv" / "bin" / "patrol"), "run", str(cameras), "--fleet", redis_url,
                        "--worker-id", name, "--capacity", str(capacity), "--lease-ttl", str(ttl_s),
                        "--var", str(root / name), "--queue", redis_url, "--evidence", str(root / "evidence"),
                        "--metrics", self.metrics, "--health-every", "60"]
        self.log_path = root / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.starts += 1

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(90)

    def sample(self) -> dict:
        """Memory, descriptors and threads from /proc; cameras and lag from /metrics."""
        row = {"rss_mb": None, "fds": None, "threads": None, "cameras": None, "max_lag_s": None}
        if self.process is None or self.process.poll() is not None:
            return row
        proc = Path(f"/proc/{self.process.pid}")
        try:
            status = (proc / "status").read_text()
            row["rss_mb"] = round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)
            row["threads"] = int(re.search(r"Threads:\s+(\d+)", status).group(1))
            row["fds"] = len(os.listdir(proc / "fd"))
        except (OSError, AttributeError):
            return row
        try:
            text = urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5).read().decode()
        except OSError:
            return row
        row["cameras"] = len(re.findall(r'patrol_camera_state\{camera="[^"]+",state="live"\} 1\.0', text))
        lags = [float(v) for v in re.findall(r"patrol_camera_lag_seconds\{[^}]*\} ([0-9.e+-]+)", text)]
        row["max_lag_s"] = round(max(lags), 3) if lags else None
        return row


def camera_files(folder: Path, server: RtspServer, names: list[str]) -> Path:
    sample = yaml.safe_load((REPO / "streams" / "sample-street.yaml").read_text(encoding="utf-8"))
    folder.mkdir(parents=True)
    for name in names:
        doc = {**sample, "id": name, "name": f"soak {name}", "url": server.url(name)}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return folder


def cases_filed(redis_url: str) -> int | None:
    queue = open_queue(redis_url)
    try:
        return queue.count()
    except BackendUnavailable:
        return None
    finally:
        queue.close()


def duplicates(redis_url: str, rtsp_starts: list[float]) -> dict:
    """Cases beyond what one loop of the sample can give, per camera, loop and kind (2 parking, 1
    stall, 1 bin); a loop is placed by the case's confirmation time after the RTSP server's start."""
    allowed = {"illegal_parking": 2, "stall_encroachment": 1, "bin_overflow": 1}
    queue = open_queue(redis_url, group="soak-count")
    counts: Counter = Counter()
    try:
        while deliveries := queue.consume("soak", count=500):
            for record in (d.record for d in deliveries):
                if record.violation not in allowed:  # camera faults: not violations
                    continue
                wall = datetime.fromisoformat(record.confirmed_wall).timestamp()
                start = max((s for s in rtsp_starts if s <= wall), default=rtsp_starts[0])
                counts[(record.camera_id, start, int((wall - start) // LOOP_S), record.violation)] += 1
    finally:
        queue.close()
    extra = sum(max(0, n - allowed[key[3]]) for key, n in counts.items())
    return {"violation_cases": sum(counts.values()), "beyond_ground_truth": extra}


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="patrol-soak-", dir=args.work))
    names = [f"soak-{n:02d}" for n in range(1, args.cameras + 1)]
    redis_server = RedisServer(root / "redis")
    redis_server.start()
    rtsp = RtspServer(dict.fromkeys(names, SAMPLE), live=True).start()
    cameras = camera_files(root / "streams", rtsp, names)
    capacity = args.cameras  # each can carry all of them alone: the fault-free share is half
    workers = [Worker(name, cameras, redis_server.url, root, capacity, args.lease_ttl) for name in ("w1", "w2")]
    for worker in workers:
        worker.start()
    rtsp_starts = [rtsp.started_wall]
    faults = [("kill w1", lambda: _kill_and_restart(workers[0])),
              ("redis down 30 s", lambda: _redis_outage(redis_server)),
              ("rtsp restart", lambda: rtsp_starts.append(_rtsp_restart(rtsp)))]
    rows: list[dict] = []
    events: list[dict] = []
    started = time.monotonic()
    next_sample, next_fault, fault_index = started, started + args.fault_every * 60, 0
    csv_path = RESULTS / "soak.csv"
    try:
        with csv_path.open("w", newline="", encoding="utf-8") as out:
            fields = ["minute", "worker", "pid", "starts", "rss_mb", "fds", "threads", "cameras", "max_lag_s",
                      "cases"]
            writer = csv.DictWriter(out, fields)
            writer.writeheader()
            while time.monotonic() - started < args.hours * 3600:
                now = time.monotonic()
                if now >= next_fault:
                    name, inject = faults[fault_index % len(faults)]
                    events.append({"minute": round((now - started) / 60, 2), "fault": name})
                    print(f"[soak] {events[-1]['minute']:.1f} min: {name}", flush=True)
                    inject()
                    fault_index += 1
                    next_fault += args.fault_every * 60
                if now >= next_sample:
                    cases = cases_filed(redis_server.url)
                    for worker in workers:
                        row = {"minute": round((now - started) / 60, 2), "worker": worker.name,
                               "pid": worker.process.pid, "starts": worker.starts, **worker.sample(), "cases": cases}
                        rows.append(row)
                        writer.writerow(row)
                    out.flush()
                    print(f"[soak] {rows[-1]['minute']:.0f} min: " + ", ".join(
                        f"{r['worker']} rss={r['rss_mb']}MB fds={r['fds']} threads={r['threads']} "
                        f"cameras={r['cameras']} lag={r['max_lag_s']}" for r in rows[-2:]) + f"; cases={cases}",
                        flush=True)
                    next_sample += 60
                time.sleep(1)
    finally:
        for worker in workers:
            worker.stop()
        rtsp.stop()
        counted = {"cases": cases_filed(redis_server.url), **duplicates(redis_server.url, rtsp_starts)}
        redis_server.stop()
    settings = {"hours": args.hours, "cameras": args.cameras, "lease_ttl_s": args.lease_ttl,
                "fault_every_min": args.fault_every}
    return summarise(rows, events, counted, settings, str(root))


def _kill_and_restart(worker: Worker) -> None:
    worker.stop(signal.SIGKILL)
    time.sleep(20)
    worker.start()


def _redis_outage(server: RedisServer) -> None:
    server.stop()
    time.sleep(30)
    server.start()


def _rtsp_restart(server: RtspServer) -> float:
    server.stop()
    server.start()
    return server.started_wall


WARM_UP_MIN = 5.0  # the model loads and the first cameras start: not part of the steady state


def summarise(rows: list[dict], events: list[dict], counted: dict, settings: dict, work: str) -> dict:
    """soak.json and the two charts. w2 is never restarted, so its figures after the warm-up say
    whether a worker leaks: the halves' means, the least-squares slope, the range."""
    steady = [r for r in rows if r["worker"] == "w2" and r["rss_mb"] is not None and r["minute"] >= WARM_UP_MIN]
    half = len(steady) // 2

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    def span(key: str) -> list:
        return [min((r[key] for r in steady), default=None), max((r[key] for r in steady), default=None)]

    minutes, rss = np.array([r["minute"] for r in steady]), np.array([r["rss_mb"] for r in steady])
    summary = {
        "machine": machine(),
        "settings": settings,
        "faults": events,
        **counted,
        "most_cases_possible": int(settings["cameras"] * EPISODES_PER_LOOP * settings["hours"] * 3600 / LOOP_S),
        "w2": {  # never restarted: a leak shows here
            "after_minute": WARM_UP_MIN,
            "rss_mb_first_half": mean([r["rss_mb"] for r in steady[:half]]),
            "rss_mb_second_half": mean([r["rss_mb"] for r in steady[half:]]),
            "rss_mb_slope_per_hour": round(float(np.polyfit(minutes / 60, rss, 1)[0]), 1) if len(steady) > 2 else None,
            "rss_mb_min_max": span("rss_mb"),
            "fds_min_max": span("fds"),
            "threads_min_max": span("threads"),
        },
        "max_lag_s": max((r["max_lag_s"] for r in rows if r["max_lag_s"] is not None), default=None),
        "work": work,
    }
    (RESULTS / "soak.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    title = f"soak: 2 fleet workers, {settings['cameras']} live cameras, a fault every {settings['fault_every_min']:g} min"
    for png, keys, unit in (("soak.png", ("rss_mb",), "resident memory, MiB"),
                            ("soak-fds-threads.png", ("fds", "threads"), "count")):
        series = {}
        for name in ("w1", "w2"):
            mine = [r for r in rows if r["worker"] == name and r["rss_mb"] is not None]
            for key in keys:
                series[f"{name} {key}"] = ([r["minute"] for r in mine], [r[key] for r in mine])
        line_chart(RESULTS / png, title, series, "minutes", unit)
    print(json.dumps(summary, indent=2))
    return summary


def read_rows(csv_path: Path) -> list[dict]:
    """The rows of a run's CSV, typed as the run wrote them."""
    numbers = {"minute": float, "rss_mb": float, "max_lag_s": float, "pid": int, "starts": int, "fds": int,
               "threads": int, "cameras": int, "cases": int}
    with csv_path.open(encoding="utf-8") as source:
        return [{key: (numbers[key](value) if value else None) if key in numbers else value
                 for key, value in row.items()} for row in csv.DictReader(source)]


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (and SIGINT, which a shell's background job ignores) end the run early with its summary
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--fault-every", type=float, default=10.0, help="minutes between faults")
    parser.add_argument("--work", default=None, help="folder for the run's evidence, spools and logs (default: /tmp)")
    parser.add_argument("--from-csv", type=Path, help="summarise a finished run again from its CSV (its faults, "
                        "cases and settings from the soak.json beside it) instead of running")
    args = parser.parse_args(argv)
    if args.from_csv is not None:
        before = json.loads((args.from_csv.parent / "soak.json").read_text(encoding="utf-8"))
        counted = {key: before[key] for key in ("cases", "violation_cases", "beyond_ground_truth")}
        summarise(read_rows(args.from_csv), before["faults"], counted, before["settings"], before["work"])
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
