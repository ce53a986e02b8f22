"""The officers' review service: cases from the queue, their evidence, decisions and the audit trail.

`create_app(settings)` builds the FastAPI app (JSON API under /api, the officers' page at /);
`start_review_server(var, ...)` runs it in a background thread, as `patrol demo` does. This package
reads the queue, evidence and camera files; it never imports ingest, detect or track.

The names below load on first use: importing one module of the package (a default for the CLI's
help, a vocabulary) does not start FastAPI, Jinja and the password hasher.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.review.app import create_app
    from pipeline.review.server import ReviewServer, start_review_server
    from pipeline.review.settings import ReviewSettings

_HOMES = {"create_app": "pipeline.review.app", "ReviewServer": "pipeline.review.server",
          "start_review_server": "pipeline.review.server", "ReviewSettings": "pipeline.review.settings"}

__all__ = ["ReviewServer", "ReviewSettings", "create_app", "start_review_server"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
