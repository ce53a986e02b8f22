"""Evidence files in a directory tree; key ``a/b/c.jpg`` is the file ``root/a/b/c.jpg``."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from pipeline.durable import fsync_directory, write_synced
from pipeline.evidence.store import EvidenceStore, InvalidEvidenceKey, validate_key


class LocalEvidenceStore(EvidenceStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _keys(self, prefix: str) -> list[str]:
        # Walk only below the prefix's directory part, which must itself stay inside the root.
        directory, _, _ = prefix.rpartition("/")
        start = self._path(directory) if directory else self.root
        if not start.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            for name in filenames:
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if not name.startswith(".") and key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def _write(self, key: str, data: bytes, content_type: str, sha256: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory as the target, so the rename is atomic on one filesystem.
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            write_synced(temporary, data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)  # makes the rename itself survive a power cut

    def _read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def _read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as file:
                file.seek(offset)
                return file.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyError(key) from None

    def _size_of(self, key: str) -> int:
        path = self._path(key)
        try:
            if path.is_file():
                return path.stat().st_size
        except FileNotFoundError:  # removed between the two looks
            pass
        raise KeyError(key)

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _sha256_of(self, key: str) -> str:
        # Hashed from the file each time: a file changed on disk after it was written shows up.
        try:
            with open(self._path(key), "rb") as file:
                return hashlib.file_digest(file, "sha256").hexdigest()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyError(key) from None

    def _url_for(self, key: str, expires_s: float) -> str | None:
        if not self._exists(key):
            raise KeyError(key)
        return None

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # A symlink inside the root could still lead out of it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidEvidenceKey(f"evidence key {key!r} resolves outside {self.root}")
        return path
