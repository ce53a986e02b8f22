"""`patrol bench`: the benchmarks in ``benchmarks/`` (a source checkout's, not part of the package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pipeline
from pipeline.cli.errors import UsageError

REPO = Path(pipeline.__file__).resolve().parents[1]
WHICH = ("all", "compare", "stages", "cameras", "gating", "gpu")


def add_bench_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol bench` to the `patrol` parser."""
    bench = verbs.add_parser(
        "bench", help="throughput benchmarks: against the CPU bound of every stage and ultralytics' own loop (bare "
        "ONNX Runtime as a reference), per stage, cameras per box, motion gating and batching, GPU; JSON and PNG in "
        "--out, a table on stdout")
    bench.add_argument("which", nargs="?", default="all", choices=WHICH)
    bench.add_argument("--quick", action="store_true", help="short runs: everything in a few minutes")
    bench.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for the JSON and PNG")
    bench.add_argument("--work", default=str(REPO / "var" / "bench"),
                       help="rendered input videos (kept for the next run) and scratch")
    bench.add_argument("--model", default=str(REPO / "models" / "patrol-street-int8.onnx"), help="ONNX detector")
    bench.add_argument("--conf", type=float, default=0.25, help="detector score threshold, for every contestant")
    bench.add_argument("--threads", type=int,
                       help="ONNX Runtime intra-op threads for the patrol and the bare session (default: its own)")
    bench.add_argument("--layout", choices=("1080p", "360p", "sub+main"),
                       help="cameras only: this layout alone (1080p or 360p analysed; sub+main: a 640x360 sub-stream "
                       "analysed, the 1080p main stream recorded, gating and the adaptive rate on, on a busy and a "
                       "mostly static street); cameras.json keeps the other layouts' figures")
    bench.add_argument("--ultralytics-python",
                       help="a Python with ultralytics for the comparison (default: $ULTRALYTICS_PYTHON, else "
                       ".venv-train/bin/python, else ../train-venv/bin/python)")
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if not (REPO / "benchmarks" / "run.py").is_file():
        raise UsageError(f"patrol bench needs a source checkout: no benchmarks/ in {REPO}")
    if args.layout is not None and args.which != "cameras":
        raise UsageError(f"--layout is for patrol bench cameras, not {args.which}")
    if not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: no such file")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.common import Settings
    from benchmarks.compare import find_ultralytics_python
    from benchmarks.run import run_benchmarks

    try:
        ultralytics_python = find_ultralytics_python(args.ultralytics_python)
    except ValueError as exc:
        raise UsageError(str(exc))
    settings = Settings(quick=args.quick, out=Path(args.out), work=Path(args.work), model=Path(args.model),
                        threads=args.threads, conf=args.conf, ultralytics_python=ultralytics_python,
                        layout=args.layout)
    run_benchmarks(args.which, settings)
    return 0

