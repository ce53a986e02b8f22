"""The evidence store interface: content-addressed-by-name blobs, on local disk or in S3/MinIO."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

from pipeline.types import EvidenceItem

# S3 signs a presigned URL for at most seven days; one rule for every backend keeps a value
# that works in development from failing only once deployed on S3.
MAX_URL_EXPIRY_S = 7 * 24 * 3600


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
    """Write-once-per-name evidence files; writing a key again replaces it whole.

    Backends that talk to a server raise ``pipeline.types.BackendUnavailable`` when it cannot be
    reached, so callers can spool and retry without knowing the client library.
    """

    def put(self, key: str, data: bytes, content_type: str) -> EvidenceItem:
        """Store ``data`` at ``key`` atomically: readers see old or new bytes, never a part."""
        digest = hashlib.sha256(data).hexdigest()
        self._write(validate_key(key), data, content_type, digest)
        return EvidenceItem(key=key, sha256=digest, content_type=content_type)

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; KeyError if there are none."""
        return self._read(validate_key(key))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (fewer at its end); KeyError if there are none.

        For a browser scrubbing a clip (HTTP Range): only the part asked for is read.
        """
        if offset < 0 or length < 1:
            raise ValueError(f"a byte range starts at 0 or later and holds a byte at least, not {offset}+{length}")
        return self._read_range(validate_key(key), offset, length)

    def size_of(self, key: str) -> int:
        """How many bytes are stored at ``key``; KeyError if there are none."""
        return self._size_of(validate_key(key))

    def exists(self, key: str) -> bool:
        return self._exists(validate_key(key))

    def keys(self, prefix: str = "") -> list[str]:
        """Every stored key starting with ``prefix`` (a plain string prefix), sorted.

        The prefix's directory part must be a valid key, on every backend, so a listing that
        would leave the store root on disk is refused in a bucket too.
        """
        directory, _, _ = prefix.rpartition("/")
        if directory:
            validate_key(directory)
        return self._keys(prefix)

    def sha256_of(self, key: str) -> str:
        """Hex sha256 of the bytes at ``key``; KeyError if there are none."""
        return self._sha256_of(validate_key(key))

    def url_for(self, key: str, expires_s: float = 900) -> str | None:
        """A URL a reviewer's browser can fetch ``key`` from for ``expires_s`` seconds; KeyError if absent.

        ``None`` when the backend has no such URL (local disk): the review service then serves
        the file itself, after checking the reviewer may see the case.
        """
        if not 1 <= expires_s <= MAX_URL_EXPIRY_S:
            raise ValueError(f"URL expiry must be 1 s to 7 days ({MAX_URL_EXPIRY_S} s), not {expires_s}")
        return self._url_for(validate_key(key), expires_s)

    @abstractmethod
    def _write(self, key: str, data: bytes, content_type: str, sha256: str) -> None: ...

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abstractmethod
    def _read_range(self, key: str, offset: int, length: int) -> bytes: ...

    @abstractmethod
    def _size_of(self, key: str) -> int: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _keys(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def _sha256_of(self, key: str) -> str: ...

    @abstractmethod
    def _url_for(self, key: str, expires_s: float) -> str | None: ...
