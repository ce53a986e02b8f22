"""The audit trail (全程留痕): an append-only, hash-chained log of who did what to which case.

Each entry carries the sha256 of the entry before it and its own sha256 over a canonical JSON of
all its fields, ``prev_sha256`` included. Changing, removing or inserting any entry therefore
breaks the chain at that entry, and :func:`first_broken_link` names it. What a chain cannot show
by itself is the loss of its newest entries; :func:`first_broken_link` returns the head sha256 so
it can be written down outside the machine (a daily print-out, a second system) and compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_SHA256 = "0" * 64  # prev_sha256 of the first entry


def now_iso() -> str:
    """An entry's ``at``; the review store's other times use the same form, so they compare with it."""
    return utc_iso(datetime.now(UTC))


def utc_iso(moment: datetime) -> str:
    """``moment`` (with an offset) in the form of ``now_iso``: UTC, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int  # 1, 2, 3, ... without gaps
    at: str  # ISO 8601 UTC, milliseconds
    actor: str  # user name, or "system"
    action: str  # vocabulary.ACTION_LABELS keys
    case_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any]
    prev_sha256: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8 (so Chinese text hashes as written)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_sha256(fields: dict[str, Any]) -> str:
    """sha256 of an entry's fields other than its own sha256 (``prev_sha256`` included)."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def seal(
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    case_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: dict[str, Any],
    prev_sha256: str,
) -> AuditEntry:
    """The entry with its sha256 filled in."""
    fields = {"seq": seq, "at": at, "actor": actor, "action": action, "case_id": case_id, "before": before,
              "after": after, "detail": detail, "prev_sha256": prev_sha256}
    return AuditEntry(**fields, sha256=entry_sha256(fields))


@dataclass(frozen=True, slots=True)
class ChainCheck:
    entries: int
    head_sha256: str
    broken_seq: int | None  # None when every link holds
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def first_broken_link(entries: Iterable[AuditEntry]) -> ChainCheck:
    """Walk the chain from the first entry; stop at the first entry that does not hold."""
    expected_seq, prev_sha256, count = 1, GENESIS_SHA256, 0
    for entry in entries:
        if entry.seq != expected_seq:
            what = "missing" if entry.seq > expected_seq else "repeated or out of order"
            return ChainCheck(count, prev_sha256, expected_seq,
                              f"audit seq {expected_seq}: {what} (next entry found is seq {entry.seq})")
        if entry.prev_sha256 != prev_sha256:
            return ChainCheck(count, prev_sha256, entry.seq,
                              f"audit seq {entry.seq}: prev_sha256 {entry.prev_sha256[:16]}… does not match the "
                              f"sha256 {prev_sha256[:16]}… of seq {entry.seq - 1}")
        recomputed = entry_sha256({k: v for k, v in entry.to_dict().items() if k != "sha256"})
        if recomputed != entry.sha256:
            return ChainCheck(count, prev_sha256, entry.seq,
                              f"audit seq {entry.seq} ({entry.action} by {entry.actor}, case {entry.case_id}): "
                              f"content changed after it was written (sha256 recorded {entry.sha256[:16]}…, "
                              f"recomputed {recomputed[:16]}…)")
        expected_seq, prev_sha256, count = entry.seq + 1, entry.sha256, count + 1
    return ChainCheck(count, prev_sha256, None, None)
