"""`patrol`: one verb per job."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pipeline
from pipeline.cli.errors import UsageError

SAMPLE_CAMERA = Path(pipeline.__file__).resolve().parents[1] / "streams" / "sample-street.yaml"


def _compose(args, workspace):
    """Detector and backends from the common options (the engine's composition root does the work;
    here an unusable option becomes a usage error that names it)."""
    from pipeline.engine import BackendOptions, DetectorOptions, OptionError, build_backends, build_detector

    try:
        detector = build_detector(DetectorOptions(tuple(args.model or ()), args.conf, args.threads))
        backends = build_backends(BackendOptions(workspace, queue_url=args.queue, evidence_url=args.evidence,
                                                 spool=Path(args.spool) if args.spool else None,
                                                 event_codes=args.event_codes), detector.model_record())
    except OptionError as exc:
        raise UsageError(str(exc)) from exc
    return detector, backends


def _candidate(value: str, flag: str, args):
    """The candidate detector ``flag`` names (``--candidate``, ``--shadow-model``: the syntax of
    ``--model``), with the common options' score threshold and threads."""
    from pipeline.engine import DetectorOptions, OptionError, build_detector
    from pipeline.engine.compose import model_option

    try:
        path, _ = model_option(value)
        if not path.is_file():
            raise UsageError(f"{flag} {value}: no such file")
        return build_detector(DetectorOptions((value,), args.conf, args.threads))
    except OptionError as exc:  # worded for --model, whose syntax the candidate's shares
        raise UsageError(f"{flag} {value}: {str(exc).removeprefix(f'--model {value}: ')}") from exc


def _event_entries(args) -> frozenset[str]:
    """The entries of the ``--event-codes`` table, which a camera file's ``event:`` must name."""
    from pipeline.engine import OptionError, event_code_table

    try:
        return frozenset(event_code_table(args.event_codes).codes)
    except OptionError as exc:
        raise UsageError(str(exc)) from exc


def _load_cameras(paths: list[str], args):
    """Each camera with the file it was read from."""
    from pipeline.config import load_camera, load_camera_files

    entries = _event_entries(args)
    cameras = []
    for path in paths:
        cameras.extend(load_camera_files(path, event_entries=entries) if Path(path).is_dir()
                       else [(Path(path), load_camera(path, event_entries=entries))])
    if not cameras:
        raise UsageError(f"no camera files (*.yaml) in {', '.join(paths)}")
    ids = [camera.id for _, camera in cameras]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise UsageError(f"camera id(s) {', '.join(repeated)} given more than once in {', '.join(paths)}")
    return cameras


def _patrol(args, cameras, *, loop_files: bool, streams_dir: Path | None) -> int:
    from pipeline.config import Workspace
    from pipeline.engine import case_line
    from pipeline.engine.allocator import cap_malloc_arenas
    from pipeline.engine.health import serve_metrics
    from pipeline.engine.shadow import LiveShadow

    cap_malloc_arenas()  # before the first camera thread: weeks of cameras coming and going stay level
    workspace = Workspace(Path(args.var))
    # before the backends: a refused candidate leaves nothing to close
    candidate = _candidate(args.shadow_model, "--shadow-model", args) if args.shadow_model else None
    detector, backends = _compose(args, workspace)
    shadow = None if candidate is None else LiveShadow(candidate, detector.model_record(),
                                                       LiveShadow.log_path_in(workspace.root, candidate.name))
    filer = backends.filer
    filer.listeners.append(lambda record, is_new: print(case_line(record, is_new), flush=True))

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        patrol, runner, fleet_line = _patrol_or_fleet(args, cameras, detector, backends.cases, workspace, loop_files,
                                                      say, shadow)
    except UsageError:
        filer.close(drain_timeout_s=0)
        raise
    try:
        metrics = serve_metrics(args.metrics, patrol.report)
    except ValueError as exc:
        filer.close(drain_timeout_s=0)
        raise UsageError(f"--metrics {args.metrics}: {exc}") from exc
    try:
        review = _serve_review(args, workspace, backends, streams_dir, metrics) if args.review != "off" else None
    except UsageError:
        filer.close(drain_timeout_s=0)
        raise
    _stop_on_signals(patrol)
    root = backends.evidence_root
    where = f"evidence under {root}" if root else "evidence in the object store"
    print(f"patrol: {len(cameras)} camera(s), model {detector.name} on {detector.providers[0]}, {where}; "
          f"spool {filer.spool.root}" + (f"; metrics {metrics}" if metrics else "") + "; Ctrl-C stops", flush=True)
    if fleet_line:
        print(fleet_line, flush=True)
    if shadow is not None:
        print(f"shadow: candidate {candidate.name} on the same frames, filing nothing (the network's work doubles); "
              f"its would-be cases in {shadow.log_path}, for `patrol shadow-compare`", flush=True)
    if review is not None:
        print(review.line(), flush=True)
    try:
        runner.run(duration_s=args.duration)
    except KeyboardInterrupt:
        patrol.stop()
    finally:
        left = filer.close(drain_timeout_s=args.drain_timeout)
        if review is not None:
            review.stop()
        waiting = f"; {left} case(s) wait in the spool and go out on the next start" if left else ""
        rejected = filer.drainer.rejected
        aside = f"; {rejected} undeliverable case(s) set aside in {filer.spool.rejected}" if rejected else ""
        print(f"patrol: stopped; {filer.drainer.delivered} new case(s) filed{waiting}{aside}", flush=True)
    if filer.held:  # held in memory for a spool that never took them: they end with this process
        print(f"patrol {args.verb}: {filer.spool_error}: {filer.held} case(s) not written", file=sys.stderr)
        return 1
    return 0


def _stop_on_signals(patrol) -> None:
    """SIGTERM and Ctrl-C stop the patrol cleanly: cameras flushed, episodes saved, spool drained.
    A second Ctrl-C interrupts that (the spool keeps what it holds for the next start)."""
    def stop(number: int, _frame) -> None:
        patrol.stop_soon()
        if number == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _patrol_or_fleet(args, cameras, detector, cases, workspace, loop_files: bool, say, shadow):
    """The patrol over every camera, or with ``--fleet`` a worker taking its share of them by lease;
    returns (patrol, what to run, a line saying which)."""
    from pipeline.engine import Patrol
    from pipeline.rules.memory import FileEpisodeMemory

    fleet_url = getattr(args, "fleet", None)
    options = {"loop_files": loop_files, "health_every_s": args.health_every, "print_line": say, "shadow": shadow}
    if not fleet_url:
        patrol = Patrol(cameras, detector, cases, memory=FileEpisodeMemory(workspace.episodes), **options)
        return patrol, patrol, None

    import socket

    from pipeline.fleet import FleetWorker, LeaseBoard, RedisEpisodeMemory, connect, measure_capacity

    if args.lease_ttl <= 0:
        raise UsageError(f"--lease-ttl {args.lease_ttl}: must be more than 0 seconds")
    if args.capacity is not None and args.capacity < 1:
        raise UsageError(f"--capacity {args.capacity}: must be at least 1 camera")
    try:
        client = connect(fleet_url)
    except ValueError as exc:
        raise UsageError(f"--fleet / PATROL_FLEET: {exc}") from exc
    worker_id = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    patrol = Patrol([], detector, cases, memory=RedisEpisodeMemory(client), until_stopped=True, **options)
    capacity = args.capacity or measure_capacity(detector, cameras)
    worker = FleetWorker(patrol, cameras, LeaseBoard(client, worker_id, args.lease_ttl), capacity, print_line=say)
    how = "given" if args.capacity else "measured"
    return patrol, worker, (f"fleet: worker {worker_id} takes up to {capacity} of the {len(cameras)} camera(s) "
                            f"({how}) by leases of {args.lease_ttl:g}s")


def _serve_review(args, workspace, backends, streams_dir: Path | None, metrics_url: str | None):
    """The officers' review page beside the patrol, over the same queue and evidence."""
    from pipeline.review import start_review_server

    host, _, port = args.review.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--review {args.review}: expected HOST:PORT (port 0 picks a free one) or off")
    try:
        return start_review_server(workspace.root, host=host, port=int(port), streams_dir=streams_dir,
                                   metrics_urls=[metrics_url] if metrics_url else (),
                                   queue_url=backends.queue_url, evidence_url=backends.evidence_url)
    except OSError as exc:
        raise UsageError(f"--review {args.review}: {exc}") from exc


def cmd_run(args) -> int:
    from pipeline.ingest import require_an_openable_camera

    folders = [Path(p) for p in args.cameras if Path(p).is_dir()]
    camera_files = _load_cameras(args.cameras, args)
    require_an_openable_camera(camera_files)
    return _patrol(args, [camera for _, camera in camera_files], loop_files=args.loop,
                   streams_dir=folders[0] if folders else Path(args.cameras[0]).parent)


def cmd_demo(args) -> int:
    cameras = [camera for _, camera in _load_cameras([str(SAMPLE_CAMERA)], args)]
    return _patrol(args, cameras, loop_files=True, streams_dir=SAMPLE_CAMERA.parent)


def _detect_video(args, camera) -> str | None:
    """The sub-stream file to analyse: ``--detect``, else the camera file's ``detect_url`` when it is
    a video file (a stream's cannot be replayed); None for a camera of one input."""
    from pipeline.ingest.source import video_path

    detect = args.detect
    if detect is None and camera.detect_url is not None and (path := video_path(camera.detect_url)) is not None:
        detect = str(path)
    if detect is not None and not Path(detect).is_file():
        raise UsageError(f"{'--detect' if args.detect else 'detect_url'}: video file not found: {detect}")
    return detect


def _add_detect_option(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--detect", metavar="VIDEO", help="the same scene's sub-stream, analysed while VIDEO is only "
                      "recorded for the evidence, as a camera's detect_url (default: the camera file's detect_url "
                      "when it is a video file)")


def cmd_replay(args) -> int:
    from pipeline.config import Workspace, camera_settings, load_camera
    from pipeline.engine import case_line, replay

    camera = load_camera(args.camera, event_entries=_event_entries(args),
                         settings=camera_settings(args.camera_setting or ()))
    if not Path(args.video).is_file():
        raise UsageError(f"video file not found: {args.video}")
    detect = _detect_video(args, camera)
    out = Path(args.out)
    detector, backends = _compose(args, Workspace(out))
    filer = backends.filer
    if args.verbose:
        filer.listeners.append(lambda record, is_new: print(case_line(record, is_new), flush=True))
    start = time.time()
    if args.start_time:
        try:
            given = datetime.fromisoformat(args.start_time)
        except ValueError as exc:
            raise UsageError(f"--start-time {args.start_time}: not an ISO 8601 time") from exc
        # a time without an offset is the camera's local clock, as an officer would read it
        start = (given if given.tzinfo else given.replace(tzinfo=camera.tz)).timestamp()
    try:
        summary = replay(args.video, camera, detector, backends.cases, cases_path=out / "cases.jsonl",
                         evidence_root=backends.evidence_root,
                         start_wall=start, progress=sys.stderr.isatty(), drain_timeout_s=args.drain_timeout,
                         detect_video=detect)
    finally:
        filer.close(drain_timeout_s=0)
    print(summary.line())
    print(f"cases: {out / 'cases.jsonl'}")
    if (failure := summary.failure()) is not None:
        print(f"patrol replay: {failure}", file=sys.stderr)
        return 1
    return 0


def cmd_synth(args) -> int:
    from pipeline.synth import render_dataset, render_video, sample_scenario

    if args.dataset:
        data_yaml = render_dataset(Path(args.out), args.count, seed=args.seed, progress=sys.stderr.isatty())
        print(f"synth: {args.count} labelled scenes, {data_yaml}")
        return 0
    width, height = (int(v) for v in args.size.split("x"))
    truth = render_video(sample_scenario(seed=args.seed, width=width, height=height, fps=args.fps,
                                         duration_s=args.duration), Path(args.out), seed=args.seed,
                         progress=sys.stderr.isatty())
    print(f"synth: {args.out} ({truth['frames']} frames, {len(truth['episodes'])} episodes in its .gt.json)")
    return 0


def _add_backend_options(parser: argparse.ArgumentParser, *, var: bool = True) -> None:
    parser.add_argument(
        "--model", action="append", metavar="PATH[:ROLE,...]",
        help="ONNX detector, its card found by sha256 (default: models/patrol-street-int8.onnx). Give it again to run "
        "a second model on the same batches: PATH:ROLE,ROLE takes only those roles from that model (without "
        "them, every role its card maps), and each role must come from one model. Roles: vehicle, "
        "non_motor_vehicle, person, stall, bin, overflowing_bin, garbage_pile. E.g. COCO vehicles from YOLOX: "
        "--model ../shared/models/yolox_nano.onnx:vehicle,non_motor_vehicle,person "
        "--model models/patrol-street-int8.onnx:stall,bin,overflowing_bin,garbage_pile")
    parser.add_argument("--conf", type=float, default=0.25, help="detector score threshold")
    parser.add_argument("--threads", type=int,
                        help="ONNX Runtime threads per network run (default 1, with as many runs at once as cores)")
    if var:
        parser.add_argument("--var", default="var", help="working folder for the embedded queue and evidence")
    parser.add_argument("--queue", help="case queue URL: redis://host:port/db or sqlite:///path "
                        "(default: $REDIS_URL, else SQLite under --var)")
    parser.add_argument("--evidence", help="evidence store: a folder, file:///path or s3://bucket "
                        "(default: S3 when $S3_ENDPOINT is set, else a folder under --var)")
    parser.add_argument("--spool", help="this worker's own folder for cases not yet delivered (default: --var/spool)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait at exit for spooled cases to reach the backends")
    parser.add_argument("--event-codes", help="数字城管 event code table (YAML); default: the shipped one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patrol", description=pipeline.__doc__)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--version", action="version", version=f"patrol {pipeline.__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    run = verbs.add_parser("run", help="patrol live cameras (streams/*.yaml) until stopped")
    run.add_argument("cameras", nargs="+", help="camera files or folders of them")
    run.add_argument("--loop", action="store_true", help="loop file sources (as the demo does)")
    demo = verbs.add_parser("demo", help="patrol the shipped sample street as a live camera, looping")
    for p in (run, demo):
        _add_backend_options(p)
        p.add_argument("--duration", type=float, help="stop after this many seconds")
        p.add_argument("--health-every", type=float, default=5.0, help="seconds between health lines")
        p.add_argument("--metrics", default=os.environ.get("METRICS_ADDR", "127.0.0.1:9464"),
                       help="HOST:PORT of the Prometheus /metrics endpoint, or off (default: $METRICS_ADDR, "
                       "else 127.0.0.1:9464)")
        p.add_argument("--shadow-model", metavar="PATH[:ROLE,...]",
                       help="a candidate ONNX detector (syntax of --model) run beside the live one on the same "
                       "frames, filing nothing: each case it would file becomes a line of VAR/shadow/<its name>.jsonl, "
                       "for `patrol shadow-compare`. It doubles the network's work")
    demo.add_argument("--review", default="127.0.0.1:8000",
                      help="HOST:PORT of the officers' review page served beside the demo, or off")
    run.add_argument("--review", default="off",
                     help="HOST:PORT to also serve the review page from this worker (default off: `patrol serve`)")
    run.add_argument("--fleet", default=os.environ.get("PATROL_FLEET"), metavar="REDIS_URL",
                     help="share the cameras with other workers by leases in this Redis: this worker takes its fair "
                     "share and picks up the cameras of a worker that died (default: $PATROL_FLEET; none: run them all)")
    run.add_argument("--worker-id", default=os.environ.get("PATROL_WORKER_ID"),
                     help="this worker's name in the fleet (default: $PATROL_WORKER_ID, else hostname:pid)")
    run.add_argument("--capacity", type=int, default=os.environ.get("PATROL_CAPACITY") or None,
                     help="most cameras this worker takes (default: $PATROL_CAPACITY, else measured from the model's "
                     "throughput at start)")
    run.add_argument("--lease-ttl", type=float, default=os.environ.get("PATROL_LEASE_TTL") or "15",
                     help="seconds a dead worker's cameras wait before others take them (default: $PATROL_LEASE_TTL, "
                     "else 15)")
    run.set_defaults(func=cmd_run)
    demo.set_defaults(func=cmd_demo)

    rep = verbs.add_parser("replay", help="run the patrol over a video file as fast as possible")
    rep.add_argument("video")
    rep.add_argument("--camera", required=True, help="camera file whose zones and rules apply")
    _add_detect_option(rep)
    rep.add_argument("--out", required=True, help="folder for cases.jsonl, evidence and queue")
    rep.add_argument("--start-time", help="wall clock of the video's first frame, ISO 8601; without an offset, "
                     "the camera's local time (default: now)")
    rep.add_argument("-v", "--verbose", action="store_true", help="print each case as it is filed")
    rep.add_argument("--camera-setting", action="append", metavar="KEY=VALUE",
                     help="a top-level field of the camera file set for this run, its value as YAML, e.g. "
                     "adaptive_rate=false or motion_gating=true (repeatable)")
    _add_backend_options(rep, var=False)
    rep.set_defaults(func=cmd_replay)

    syn = verbs.add_parser("synth", help="render a synthetic street video with ground truth, or a training set")
    syn.add_argument("out", help="video file (.mp4) or, with --dataset, a folder")
    syn.add_argument("--seed", type=int, default=7)
    syn.add_argument("--dataset", action="store_true", help="write random labelled scenes instead of a video")
    syn.add_argument("--count", type=int, default=1000, help="scenes, with --dataset")
    syn.add_argument("--size", default="960x540")
    syn.add_argument("--fps", type=float, default=15.0)
    syn.add_argument("--duration", type=float, default=150.0)
    syn.set_defaults(func=cmd_synth)

    from pipeline.cli.bench_verbs import add_bench_verbs
    from pipeline.cli.forward_verbs import add_forward_verbs
    from pipeline.cli.model_verbs import add_model_verbs
    from pipeline.cli.recheck_verbs import add_recheck_verbs
    from pipeline.cli.retrain_verbs import add_retrain_verbs
    from pipeline.cli.review_verbs import add_review_verbs
    from pipeline.cli.shadow_verbs import add_shadow_verbs

    add_review_verbs(verbs)
    add_model_verbs(verbs)
    add_retrain_verbs(verbs)
    add_bench_verbs(verbs)
    add_forward_verbs(verbs)
    add_shadow_verbs(verbs)
    add_recheck_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipeline.config import ConfigError
    from pipeline.detect import ModelCardError
    from pipeline.durable import DatabaseFileError
    from pipeline.ingest import SourceError

    try:
        return args.func(args)
    except (ConfigError, DatabaseFileError, ModelCardError, SourceError, UsageError) as exc:
        print(f"patrol {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
