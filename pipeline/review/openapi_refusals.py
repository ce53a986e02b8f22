"""The refusals no route raises itself, added to the OpenAPI schema where they can come:

* 413: BodyLimit (body_limit.py) answers it before any route runs, for a body over its limit, so
  every operation that takes a body may get it;
* 503: the evidence store cannot be reached now (an S3 server down: BackendUnavailable, app.py's
  handler, with Retry-After), on the operations that read or write a case's evidence files. Every
  one that answers with a case's detail does, since the detail checks the files' hashes; its claim,
  release and audit trail do not. Logging in when every password hash is busy (503 as well) is the
  login routes' own, declared with them (routers/session.py).

An answer a route already declares under 413 keeps its own description; one under 503 (the dossier's
missing font) gets the store's added to it.
"""

from __future__ import annotations

from typing import Any

from pipeline.review.body_limit import MAX_BODY_BYTES, MAX_UPLOAD_BYTES

CASE_PATH = "/api/cases/{case_id}"
NO_EVIDENCE = ("/audit", "/claim", "/release")  # routes under a case that never reach the evidence store
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
TOO_LARGE = {"description": f"The body is over {MAX_BODY_BYTES} bytes ({MAX_UPLOAD_BYTES} with a disposal's "
                            "photos): refused before it is read", "content": _ERROR_BODY}
STORAGE_DOWN = {"description": "The evidence store cannot be reached now: try again after Retry-After",
                "content": _ERROR_BODY, "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                                    "description": "seconds"}}}


def reaches_evidence(path: str) -> bool:
    if not path.startswith(CASE_PATH):
        return False
    return not path[len(CASE_PATH):].startswith(NO_EVIDENCE)


def add_transport_refusals(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's) with 413 and 503 declared as the module says; changed in place and returned."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("413", {**TOO_LARGE})
            if reaches_evidence(path):
                own = responses.get("503")
                if own is None:
                    responses["503"] = {**STORAGE_DOWN}
                elif "evidence store" not in own.get("description", ""):
                    own["description"] = f"{own.get('description', '')}; or {STORAGE_DOWN['description']}"
    return schema
