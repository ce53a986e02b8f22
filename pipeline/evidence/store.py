"""The evidence store interface: content-addressed-by-name blobs, local now, S3/MinIO next."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

from pipeline.types import EvidenceItem


class InvalidEvidenceKey(ValueError):
    """A key that is not a plain relative POSIX path inside the store."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a relative POSIX path of plain segments, else raise.

    The same rule holds for every backend so a key valid on disk is valid in a bucket.
    """
    if not key:
        raise InvalidEvidenceKey("an evidence key must not be empty")
    if key.startswith("/"):
        raise InvalidEvidenceKey(f"evidence key {key!r} is absolute; keys are relative paths")
    if "\\" in key or "\x00" in key:
        raise InvalidEvidenceKey(f"evidence key {key!r} must use '/' and no NUL characters")
    for segment in key.split("/"):
        if segment == "..":
            raise InvalidEvidenceKey(f"evidence key {key!r} escapes the store root with '..'")
        if not segment or segment.startswith("."):
            # Dot names are reserved for the store's own temporary files.
            raise InvalidEvidenceKey(
                f"evidence key {key!r} has an empty or dot-leading segment {segment!r}"
            )
    return key


class EvidenceStore(ABC):
    """Write-once-per-name evidence files; writing a key again replaces it whole."""

    def put(self, key: str, data: bytes, content_type: str) -> EvidenceItem:
        """Store ``data`` at ``key`` atomically: readers see old or new bytes, never a part."""
        self._write(validate_key(key), data, content_type)
        digest = hashlib.sha256(data).hexdigest()
        return EvidenceItem(key=key, sha256=digest, content_type=content_type)

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; KeyError if there are none."""
        return self._read(validate_key(key))

    def exists(self, key: str) -> bool:
        return self._exists(validate_key(key))

    @abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """Every stored key starting with ``prefix`` (a plain string prefix), sorted."""

    @abstractmethod
    def _write(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...
