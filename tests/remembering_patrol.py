"""`patrol` whose detector remembers boxes (``support.RememberingDetector``) in a test run's folder:
``python tests/remembering_patrol.py FOLDER PACE_S ARGS...`` runs ``patrol ARGS...``.

For tests that run the CLI in a process of its own and check what the patrol does with the boxes
(spooling, delivery, restarts, several models' boxes together), not the network. With a
``PACE_S`` above 0 a remembered frame still takes that long, asleep: the faults a test injects
between two cases land between them, and the CPU the network would have used goes to the test
run's other processes.
"""

import sys
from pathlib import Path

from support import remembering_detectors

from pipeline.cli.main import main
from pipeline.engine import compose

if __name__ == "__main__":
    folder, pace_s, *argv = sys.argv[1:]
    compose.Detector = remembering_detectors(Path(folder), pace_s=float(pace_s))
    sys.exit(main(argv))
