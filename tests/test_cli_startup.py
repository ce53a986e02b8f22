"""The `patrol` command answers `--help` (and parses any verb) without loading the runtime it runs:
the network, the tracker and the web service load when a verb needs them, not before."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_command_line_loads_no_network_tracker_or_web_service() -> None:
    script = "import sys; from pipeline.cli.main import build_parser; build_parser(); print(*sys.modules)"
    loaded = set(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                text=True).stdout.split())
    assert "pipeline.cli.review_verbs" in loaded and "pipeline.cli.recheck_verbs" in loaded  # every verb parsed
    heavy = {"onnxruntime", "supervision", "fastapi", "starlette", "pipeline.engine", "pipeline.detect",
             "pipeline.track", "pipeline.review.app"}
    assert not heavy & loaded, sorted(heavy & loaded)
