"""Signed heads (the audit trail's 电子签章): the chain's head, signed with Ed25519 and kept outside the database.

The hash chain shows an entry changed in place, but not a chain cut short, nor one rewritten from
some entry on and re-sealed: whoever can write the database file can do either. So after every
append the service signs the new head (seq, sha256 and the entry's time) with a key in a file of
its own, never in the database, and appends the signed head to a JSON-lines file. `patrol verify`
then names a truncation (a signed seq no longer in the chain) and a re-sealing (a signed seq whose
sha256 differs); a bundle carries its signed head and the public key, for anyone outside to check.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.review.audit import AuditEntry, canonical_json

KEY_ENV = "PATROL_AUDIT_KEY"
HEADS_ENV = "PATROL_SIGNED_HEADS"
KEY_NAME = "audit-signing.key"
HEADS_NAME = "audit-heads.jsonl"
_TAIL_BYTES = 4096  # more than one signed head's line

log = logging.getLogger(__name__)


def anchor_paths(db_path: Path, key_path: Path | None = None, heads_path: Path | None = None) -> tuple[Path, Path]:
    """The signing key (default: beside the database) and the signed heads file (default: beside the key)."""
    key_path = key_path or db_path.parent / KEY_NAME
    return key_path, heads_path or key_path.parent / HEADS_NAME


@dataclass(frozen=True, slots=True)
class SignedHead:
    seq: int
    sha256: str
    at: str  # the entry's own time, so the signature of an entry is the same whenever it is made
    signature: str  # base64 Ed25519 over payload()

    def payload(self) -> bytes:
        return canonical_json({"seq": self.seq, "sha256": self.sha256, "at": self.at})

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.payload())
        except (InvalidSignature, binascii.Error):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HeadSigner:
    """Holds the service's signing key (made on first start, mode 0600) and appends its signed heads."""

    def __init__(self, key_path: Path, heads_path: Path) -> None:
        self._key = _load_or_create_key(key_path)
        self.heads_path = heads_path
        heads_path.parent.mkdir(parents=True, exist_ok=True)
        heads_path.touch()  # an unwritable place fails at start, not after the first decision

    @property
    def public_key_pem(self) -> str:
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def head(self, entry: AuditEntry) -> SignedHead:
        payload = SignedHead(entry.seq, entry.sha256, entry.at, "").payload()
        return SignedHead(entry.seq, entry.sha256, entry.at, base64.b64encode(self._key.sign(payload)).decode())

    def publish(self, entry: AuditEntry) -> None:
        line = json.dumps(self.head(entry).to_dict(), sort_keys=True) + "\n"
        # One write with O_APPEND: heads from several threads or processes never interleave within a line.
        descriptor = os.open(self.heads_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def publish_committed(self, entry: AuditEntry) -> None:
        """``publish`` for an entry already committed: failing here would fail a request whose change
        stands. The next head signed covers this entry through the chain."""
        try:
            self.publish(entry)
        except OSError:
            log.exception("could not append the signed head of audit seq %d to %s", entry.seq, self.heads_path)

    def catch_up(self, head: AuditEntry | None) -> None:
        """Sign the chain's head at start unless it is the last one signed: entries written while the
        service was down (by `patrol users add`, or before heads were signed at all) get anchored."""
        if head is None:
            return
        last = _parse(_last_line(self.heads_path))
        if last is None or (last.seq, last.sha256) != (head.seq, head.sha256):
            self.publish(head)


@dataclass(frozen=True, slots=True)
class HeadsCheck:
    signed: int  # heads whose signature holds
    latest: SignedHead | None  # the highest seq among them
    problems: list[str]


def check_signed_heads(entries: Sequence[AuditEntry], key_path: Path, heads_path: Path) -> HeadsCheck:
    """Every signed head in ``heads_path`` against the chain, with the public half of ``key_path``
    (the signing key itself, or a public key PEM such as a bundle's)."""
    if not heads_path.is_file():
        unanchored = f"no signed heads at {heads_path}: the end of the audit chain is anchored nowhere"
        return HeadsCheck(0, None, [unanchored] if entries else [])
    try:
        public_key = load_public_key(key_path)
        lines = heads_path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        return HeadsCheck(0, None, [f"signed heads cannot be checked: {exc}"])
    by_seq = {entry.seq: entry for entry in entries}
    good: list[SignedHead] = []
    unsigned_lines: list[int] = []
    for number, line in enumerate(lines, 1):
        head = _parse(line)
        if head is None or not head.signed_by(public_key):
            unsigned_lines.append(number)
        else:
            good.append(head)
    gone = sorted((head for head in good if head.seq not in by_seq), key=lambda head: head.seq)
    differ = sorted((head for head in good if head.seq in by_seq and by_seq[head.seq].sha256 != head.sha256),
                    key=lambda head: head.seq)
    problems = []
    if gone:
        end = entries[-1].seq if entries else 0
        problems.append(f"audit chain truncated: seq {gone[0].seq} (sha256 {gone[0].sha256[:16]}…) was signed but is "
                        f"no longer in the chain, which ends at seq {end}{_and_more(gone)}")
    if differ:
        first = differ[0]
        problems.append(f"audit seq {first.seq}: sha256 {by_seq[first.seq].sha256[:16]}… does not match its signed "
                        f"head {first.sha256[:16]}…: the chain was rewritten and re-sealed after it was "
                        f"signed{_and_more(differ)}")
    if unsigned_lines:
        problems.append(f"{heads_path} line {unsigned_lines[0]}: not a head signed by the key {key_path} "
                        f"({len(unsigned_lines)} such line(s))")
    return HeadsCheck(len(good), max(good, key=lambda head: head.seq, default=None), problems)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public half of an Ed25519 key PEM file, private or public; ValueError for any other key."""
    data = path.read_bytes()
    key = (serialization.load_pem_private_key(data, password=None).public_key() if b"PRIVATE KEY" in data
           else serialization.load_pem_public_key(data))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def _load_or_create_key(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key") from None
        return key
    key = Ed25519PrivateKey.generate()
    try:
        os.write(descriptor, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return key


def _parse(line: str) -> SignedHead | None:
    try:
        raw = json.loads(line)
        return SignedHead(seq=int(raw["seq"]), sha256=str(raw["sha256"]), at=str(raw["at"]),
                          signature=str(raw["signature"]))
    except (ValueError, KeyError, TypeError):
        return None


def _last_line(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
        lines = file.read().decode("utf-8", errors="replace").splitlines()
    return lines[-1] if lines else ""


def _and_more(heads: list[SignedHead]) -> str:
    return f" ({len(heads) - 1} later signed head(s) too)" if len(heads) > 1 else ""
