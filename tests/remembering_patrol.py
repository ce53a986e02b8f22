"""`patrol` whose detector remembers boxes (``support.RememberingDetector``) in a test run's folder:
``python tests/remembering_patrol.py FOLDER ARGS...`` runs ``patrol ARGS...``.

For tests that run the CLI in a process of its own, to kill it or to stop a server under it, and
check what the patrol does with the boxes (spooling, delivery, restarts), not the network. A
remembered frame still takes :data:`PACE_S`, asleep, about what the network takes on one core
here: the faults those tests inject between two cases land between them, and the CPU the network
would have used goes to the test run's other processes.
"""

import sys
from pathlib import Path

from support import remembering_detectors

from pipeline.cli.main import main
from pipeline.engine import compose

PACE_S = 0.025

if __name__ == "__main__":
    folder, *argv = sys.argv[1:]
    compose.Detector = remembering_detectors(Path(folder), pace_s=PACE_S)
    sys.exit(main(argv))
