"""Where a camera's live episodes wait between two runs of it (a restart, or another worker).

A snapshot is what ``RuleEngine.snapshot`` gives: JSON-ready, on the wall clock, no pictures.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class EpisodeMemory(Protocol):
    def save(self, snapshots: dict[str, dict]) -> None:
        """Stores the snapshot of each camera id given (others are left as they are)."""

    def load(self, camera_id: str) -> dict:
        """The last snapshot saved for the camera; empty when there is none."""


class FileEpisodeMemory:
    """One JSON file per camera under ``root``, replaced atomically: a single worker's restart."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, snapshots: dict[str, dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for camera_id, snapshot in snapshots.items():
            path = self.root / f"{camera_id}.json"
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps(snapshot), encoding="utf-8")
            os.replace(partial, path)

    def load(self, camera_id: str) -> dict:
        path = self.root / f"{camera_id}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file costs the episodes, not the camera
            log.warning("camera %s: cannot read its saved episodes %s: %s; starting afresh", camera_id, path, exc)
            return {}
