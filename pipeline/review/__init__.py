"""The officers' review service: cases from the queue, their evidence, decisions and the audit trail.

`create_app(settings)` builds the FastAPI app (JSON API under /api, the officers' page at /);
`start_review_server(var, ...)` runs it in a background thread, as `patrol demo` does. This package
reads the queue, evidence and camera files; it never imports ingest, detect or track.
"""

from pipeline.review.app import create_app
from pipeline.review.server import ReviewServer, start_review_server
from pipeline.review.settings import ReviewSettings

__all__ = ["ReviewServer", "ReviewSettings", "create_app", "start_review_server"]
