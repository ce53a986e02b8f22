"""`patrol shadow`: a candidate model beside the live one on a camera's video, cases compared;
`patrol shadow-compare`: the same comparison of a candidate that ran beside `patrol run`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from pipeline.cli.errors import UsageError
from pipeline.cli.main import (
    _add_backend_options,
    _add_detect_option,
    _candidate,
    _compose,
    _detect_video,
    _event_entries,
)

REPORT_NAME = "shadow.json"


def add_shadow_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol shadow` and `patrol shadow-compare` to the `patrol` parser."""
    shadow = verbs.add_parser("shadow", help="replay a video with the live model filing its cases while a candidate "
                              "model analyses the same frames beside it, filing nothing; compare the cases")
    shadow.add_argument("video")
    shadow.add_argument("--camera", required=True, help="camera file whose zones and rules apply")
    _add_detect_option(shadow)
    shadow.add_argument("--candidate", required=True, metavar="PATH[:ROLE,...]",
                        help="the candidate ONNX detector (its card found as --model's is), same syntax as --model")
    shadow.add_argument("--out", required=True,
                        help=f"folder for the live cases (cases.jsonl, evidence, queue) and the comparison "
                        f"({REPORT_NAME})")
    _add_backend_options(shadow, var=False)
    shadow.set_defaults(func=cmd_shadow)

    compare = verbs.add_parser("shadow-compare", help="compare the cases a candidate beside `patrol run "
                               "--shadow-model` would have filed with those the live model filed, per camera")
    compare.add_argument("--var", default="var", help="the patrol's working folder: its embedded queue and shadow/")
    compare.add_argument("--candidate", required=True, metavar="NAME",
                         help="the candidate's name, as in VAR/shadow/NAME.jsonl (its card's, printed at the start)")
    compare.add_argument("--since", help="ISO 8601; without an offset, this machine's local time (default: the "
                         "candidate's first watch)")
    compare.add_argument("--until", help="ISO 8601, as --since (default: now)")
    compare.add_argument("--out", help="the comparison as JSON (default: VAR/shadow/NAME.compare.json)")
    compare.set_defaults(func=cmd_shadow_compare)


def cmd_shadow(args) -> int:
    from pipeline.config import Workspace, load_camera
    from pipeline.engine import case_line
    from pipeline.engine.shadow import shadow

    camera = load_camera(args.camera, event_entries=_event_entries(args))
    if not Path(args.video).is_file():
        raise UsageError(f"video file not found: {args.video}")
    detect = _detect_video(args, camera)
    candidate = _candidate(args.candidate, "--candidate", args)  # before the backends: a refused one leaves nothing
    out = Path(args.out)
    live, backends = _compose(args, Workspace(out))
    filer = backends.filer
    filer.listeners.append(lambda record, is_new: print(case_line(record, is_new), flush=True))
    try:
        run = shadow(args.video, camera, live, candidate, backends.cases, cases_path=out / "cases.jsonl",
                     report_path=out / REPORT_NAME, evidence_root=backends.evidence_root, start_wall=time.time(),
                     progress=sys.stderr.isatty(), drain_timeout_s=args.drain_timeout, detect_video=detect)
    finally:
        filer.close(drain_timeout_s=0)
    print(run.summary.line())
    print(run.report.table())
    print(f"cases: {out / 'cases.jsonl'}")
    print(f"report: {out / REPORT_NAME}")
    if (failure := run.summary.failure()) is not None:
        print(f"patrol shadow: {failure}", file=sys.stderr)
        return 1
    return 0


def cmd_shadow_compare(args) -> int:
    from pipeline.config import Workspace
    from pipeline.engine.shadow import LiveShadow, ShadowLog, compare_live
    from pipeline.queue.sqlite_queue import SqliteCaseQueue

    workspace = Workspace(Path(args.var))
    log_path = LiveShadow.log_path_in(workspace.root, args.candidate)
    if not log_path.is_file():
        raise UsageError(f"no shadow log {log_path}: `patrol run --shadow-model` writes it")
    if not workspace.queue_db.is_file():
        raise UsageError(f"no case queue {workspace.queue_db}: the live cases are read from the embedded queue")
    since, until = _instant("--since", args.since), _instant("--until", args.until)
    try:
        log = ShadowLog.read(log_path)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"{log_path}: not a shadow log ({exc!r})") from exc
    queue = SqliteCaseQueue(workspace.queue_db)
    try:
        report = compare_live(args.candidate, log, queue, since=since, until=until, now=time.time())
    finally:
        queue.close()
    out = Path(args.out) if args.out else log_path.with_suffix(".compare.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(report.table())
    print(f"report: {out}")
    return 0


def _instant(flag: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()  # without an offset: this machine's local time
    except ValueError as exc:
        raise UsageError(f"{flag} {value}: not an ISO 8601 time") from exc
