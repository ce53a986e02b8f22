"""`patrol recheck`: the patrol looks through the camera of every case whose disposal was reported
(摄像头复核), and of every dispatched case whose deadline has passed, and files what it saw on the
case in the review store. Run beside `patrol serve`: from cron or a systemd timer, or with `--every`."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from pipeline.cli.errors import UsageError
from pipeline.cli.review_verbs import DEFAULT_DB, _evidence, _store

if TYPE_CHECKING:
    from pipeline.engine.recheck import Rechecker
    from pipeline.review.cases import CaseRepository, ReviewCase
    from pipeline.review.recheck import CameraRechecks


def cmd_recheck(args) -> int:
    from pipeline.cli.main import _load_cameras
    from pipeline.engine import DetectorOptions, OptionError, build_detector
    from pipeline.engine.recheck import Rechecker
    from pipeline.review.recheck import CameraRechecks

    if args.every is not None and args.every <= 0:
        raise UsageError(f"--every {args.every}: must be more than 0 seconds")
    if args.every is not None and args.case:
        raise UsageError("--case is rechecked once: leave out --every")
    cameras = [camera for _, camera in _load_cameras([args.cameras], args)]
    try:
        detector = build_detector(DetectorOptions(tuple(args.model or ()), args.conf, args.threads))
    except OptionError as exc:
        raise UsageError(str(exc)) from exc
    rechecker = Rechecker(cameras, detector, timeout_s=args.timeout)
    store = _store(args, must_exist=True)
    try:
        rechecks = CameraRechecks(store.cases, _evidence(args))
        while True:
            unfiled = _recheck_round(_asked_for(store.cases, args.case) if args.case else rechecks.due(),
                                     rechecker, rechecks)
            if args.every is None:
                return 1 if unfiled else 0
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()


def _asked_for(cases: CaseRepository, case_id: str) -> list[ReviewCase]:
    from pipeline.review.errors import ReviewError
    from pipeline.review.recheck import RECHECKABLE, NotRecheckable

    try:
        case = cases.get(case_id)
        if case.status not in RECHECKABLE:
            raise NotRecheckable(case)
    except ReviewError as exc:
        raise UsageError(f"--case {case_id}: {exc}") from exc
    return [case]


def _recheck_round(due: list[ReviewCase], rechecker: Rechecker, rechecks: CameraRechecks) -> int:
    """Looks at each case of ``due`` and files what was seen, a line each; how many were not filed."""
    from pipeline.review.errors import ReviewError

    unfiled = 0
    for case in due:
        result = rechecker.look(case.record)
        if result.finding is None:
            unfiled += 1
            print(f"recheck {case.case_id}: {result.problem}; the case is left as it was", flush=True)
            continue
        try:
            loop = rechecks.record(case.case_id, result.finding).loop
        except ReviewError as exc:  # decided since it was found due: verified, sent back, ...
            unfiled += 1
            print(f"recheck {case.case_id}: not filed: {exc}", flush=True)
            continue
        recheck = loop.rechecks[-1]
        seen = "still present" if recheck.still_present else "cleared"
        flag = "; flagged 复核未通过: still there at or after its deadline" if recheck.flagged else ""
        print(f"recheck {case.case_id}: {seen} (confidence {recheck.confidence:.2f}) at {recheck.frame_wall}, "
              f"after-photo {recheck.name} sha256 {recheck.sha256[:12]}…{flag}", flush=True)
    return unfiled


def add_recheck_verbs(verbs: argparse._SubParsersAction) -> None:
    from pipeline.ingest.source import GRAB_TIMEOUT_S

    recheck = verbs.add_parser(
        "recheck", help="摄像头复核: look through each disposed case's camera (and each overdue case's) and file "
        "what is there now on the case: an after-photo, still present or cleared, how sure")
    recheck.add_argument("--db", default=DEFAULT_DB, help=f"review store (SQLite; default {DEFAULT_DB})")
    recheck.add_argument("--cameras", required=True, help="folder of camera files (streams/), or one camera file")
    recheck.add_argument("--evidence", help="evidence store: a path, file:///path or s3://bucket "
                         "(default: S3_* environment, else var/evidence)")
    recheck.add_argument("--model", action="append", metavar="PATH[:ROLE,...]",
                         help="ONNX detector, as for `patrol run` (default: models/patrol-street-int8.onnx)")
    recheck.add_argument("--conf", type=float, default=0.25, help="detector score threshold")
    recheck.add_argument("--threads", type=int, help="ONNX Runtime threads per network run")
    recheck.add_argument("--case", help="recheck this case now (dispatched or disposed), due or not")
    recheck.add_argument("--every", type=float, metavar="SECONDS",
                         help="keep going: a round every SECONDS (default: one round, exit 1 if a camera was "
                         "unreachable)")
    recheck.add_argument("--timeout", type=float, default=GRAB_TIMEOUT_S,
                         help=f"seconds a camera has to give a picture (default {GRAB_TIMEOUT_S:g})")
    # The camera files are read as the patrol reads them, their event: entries checked against the shipped table.
    recheck.set_defaults(func=cmd_recheck, event_codes=None)
