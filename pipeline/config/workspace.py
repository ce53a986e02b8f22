"""The working folder (``--var``) and where each piece of the embedded default lives in it.

Every verb that reads or writes the embedded backends (the patrol, replay, the review service,
the forwarder) takes its paths from here, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def queue_db(self) -> Path:
        return self.root / "queue" / "cases.sqlite3"

    @property
    def queue_url(self) -> str:
        return f"sqlite:///{self.queue_db}"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def episodes(self) -> Path:
        return self.root / "episodes"

    @property
    def review_db(self) -> Path:
        return self.root / "review" / "review.sqlite3"


DEFAULT_WORKSPACE = Workspace(Path("var"))
