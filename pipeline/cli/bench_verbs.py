"""`patrol bench`: filled in with the benchmarks."""

from __future__ import annotations

import argparse


def add_bench_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol bench` to the `patrol` parser."""
