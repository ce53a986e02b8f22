"""Pick the evidence store backend from a URL or path, so deployments switch by setting only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.evidence.local_store import LocalEvidenceStore
from pipeline.evidence.s3_store import S3EvidenceStore
from pipeline.evidence.store import EvidenceStore

DEFAULT_EVIDENCE_ROOT = Path("var/evidence")
DEFAULT_S3_BUCKET = "patrol-evidence"


def open_evidence_store(url: str | None, environ: Mapping[str, str] = os.environ) -> EvidenceStore:
    """Open the store ``url`` names.

    ``None`` → S3 when ``S3_ENDPOINT`` is set (bucket ``S3_BUCKET``, default ``patrol-evidence``),
    else ``var/evidence`` in the working directory; a path or ``file:///abs`` → local;
    ``s3://bucket`` → that bucket, on the server ``S3_ENDPOINT`` with ``S3_ACCESS_KEY``,
    ``S3_SECRET_KEY`` and optionally ``S3_REGION`` from ``environ``.
    """
    if url is None:
        if environ.get("S3_ENDPOINT"):
            return _open_s3(environ.get("S3_BUCKET") or DEFAULT_S3_BUCKET, environ)
        return LocalEvidenceStore(DEFAULT_EVIDENCE_ROOT)
    parts = urlsplit(url)
    if parts.scheme == "":
        return LocalEvidenceStore(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("a file evidence URL is file:///absolute/path")
        return LocalEvidenceStore(unquote(parts.path))
    # Error messages never echo the URL: an object-store URL can carry credentials.
    if parts.scheme == "s3":
        if "@" in parts.netloc:
            raise ValueError("an s3:// evidence URL must not carry credentials; set S3_ACCESS_KEY and S3_SECRET_KEY")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # The writer lays keys out by date/camera/case from the bucket root; a prefix the
            # store silently dropped would file evidence where nobody looks for it.
            raise ValueError("an s3 evidence URL is s3://bucket, with no path, query or fragment")
        if not parts.netloc:
            raise ValueError("an s3 evidence URL names its bucket: s3://bucket")
        return _open_s3(parts.netloc, environ)
    raise ValueError("unsupported evidence store URL: expected a path, file:///absolute/path or s3://bucket")


def _open_s3(bucket: str, environ: Mapping[str, str]) -> S3EvidenceStore:
    settings = {}
    for name in ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        value = environ.get(name)
        if not value:
            raise ValueError(f"the S3 evidence store needs {name} set in the environment")
        settings[name] = value
    return S3EvidenceStore(
        settings["S3_ENDPOINT"],
        settings["S3_ACCESS_KEY"],
        settings["S3_SECRET_KEY"],
        bucket,
        region=environ.get("S3_REGION") or None,
    )
