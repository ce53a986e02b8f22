"""Pick the evidence store backend from a URL or path, so deployments switch by setting only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.evidence.local_store import LocalEvidenceStore
from pipeline.evidence.store import EvidenceStore

DEFAULT_EVIDENCE_ROOT = Path("var/evidence")


def open_evidence_store(url: str | None) -> EvidenceStore:
    """``None`` → ``var/evidence`` in the working directory; a path or ``file:///abs`` → local."""
    if url is None:
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
        raise NotImplementedError(
            "the S3/MinIO evidence store arrives with the backends work and is not built yet;"
            " use a local path or a file:/// URL"
        )
    raise ValueError("unsupported evidence store URL: expected a path or file:///absolute/path")
