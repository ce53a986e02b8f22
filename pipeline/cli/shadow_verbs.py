"""`patrol shadow`: a candidate model beside the live one on a camera's video, cases compared."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.cli.errors import UsageError
from pipeline.cli.main import _add_backend_options, _compose, _event_entries

REPORT_NAME = "shadow.json"


def add_shadow_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol shadow` to the `patrol` parser."""
    shadow = verbs.add_parser("shadow", help="replay a video with the live model filing its cases while a candidate "
                              "model analyses the same frames beside it, filing nothing; compare the cases")
    shadow.add_argument("video")
    shadow.add_argument("--camera", required=True, help="camera file whose zones and rules apply")
    shadow.add_argument("--candidate", required=True, metavar="PATH[:ROLE,...]",
                        help="the candidate ONNX detector (its card found as --model's is), same syntax as --model")
    shadow.add_argument("--out", required=True,
                        help=f"folder for the live cases (cases.jsonl, evidence, queue) and the comparison "
                        f"({REPORT_NAME})")
    _add_backend_options(shadow, var=False)
    shadow.set_defaults(func=cmd_shadow)


def _candidate(args):
    from pipeline.engine import DetectorOptions, OptionError, build_detector
    from pipeline.engine.compose import model_option

    try:
        path, _ = model_option(args.candidate)
        if not path.is_file():
            raise UsageError(f"--candidate {args.candidate}: no such file")
        return build_detector(DetectorOptions((args.candidate,), args.conf, args.threads))
    except OptionError as exc:  # worded for --model, whose syntax --candidate shares
        raise UsageError(f"--candidate {args.candidate}: {str(exc).removeprefix(f'--model {args.candidate}: ')}"
                         ) from exc


def cmd_shadow(args) -> int:
    from pipeline.config import Workspace, load_camera
    from pipeline.engine import case_line
    from pipeline.engine.shadow import shadow

    camera = load_camera(args.camera, event_entries=_event_entries(args))
    if not Path(args.video).is_file():
        raise UsageError(f"video file not found: {args.video}")
    candidate = _candidate(args)  # before the backends: a refused candidate leaves nothing to close
    out = Path(args.out)
    live, backends = _compose(args, Workspace(out))
    filer = backends.filer
    filer.listeners.append(lambda record, is_new: print(case_line(record, is_new), flush=True))
    try:
        run = shadow(args.video, camera, live, candidate, backends.cases, cases_path=out / "cases.jsonl",
                     report_path=out / REPORT_NAME, evidence_root=backends.evidence_root, start_wall=time.time(),
                     progress=sys.stderr.isatty(), drain_timeout_s=args.drain_timeout)
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
