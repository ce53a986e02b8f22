"""Which of a case's evidence files no longer hash to the sha256 in its record, and which of those a
supervisor has acknowledged (an ``evidence_tamper_ack`` audit entry naming the file and the sha256
its bytes had then). Until then the case may not be decided on that evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.evidence import EvidenceStore
from pipeline.review.audit import AuditEntry
from pipeline.review.cases import ReviewCase
from pipeline.types import EvidenceItem

ACKNOWLEDGE_ACTION = "evidence_tamper_ack"


@dataclass(frozen=True, slots=True)
class TamperedFile:
    name: str
    recorded_sha256: str
    actual_sha256: str | None  # None: gone from the evidence store
    acknowledged: bool  # these very bytes (or their absence) were acknowledged by a supervisor

    def to_detail(self) -> dict[str, str | None]:
        return {"name": self.name, "recorded_sha256": self.recorded_sha256, "actual_sha256": self.actual_sha256}


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """One evidence file of a case as the evidence store holds it now, beside the sha256 its record holds."""

    name: str
    key: str
    recorded_sha256: str
    data: bytes | None  # None: gone from the evidence store
    actual_sha256: str | None

    @property
    def intact(self) -> bool:
        return self.actual_sha256 == self.recorded_sha256


def read_evidence(evidence: EvidenceStore, case: ReviewCase) -> list[StoredEvidence]:
    """Every evidence file of the case, by name, read whole and hashed (for exports, which carry the bytes)."""
    return read_files(evidence, sorted(case.record.evidence.items()))


def read_loop_files(evidence: EvidenceStore, case: ReviewCase) -> list[StoredEvidence]:
    """The files its 处置流程 added to the case: the field photos of each report of disposal, then the
    after-photos of its camera rechecks, oldest first; each beside the sha256 the loop recorded."""
    loop = case.loop
    later = [*loop.photos, *loop.rechecks] if loop else []
    return read_files(evidence, [(photo.name, photo.as_evidence()) for photo in later])


def read_files(evidence: EvidenceStore, items: Iterable[tuple[str, EvidenceItem]]) -> list[StoredEvidence]:
    """Each (name, item) read whole from the store and hashed; a file gone from it has no data."""
    found = []
    for name, item in items:
        try:
            data: bytes | None = evidence.get(item.key)
        except KeyError:
            data = None
        found.append(StoredEvidence(name, item.key, item.sha256, data,
                                    None if data is None else hashlib.sha256(data).hexdigest()))
    return found


def tampered_evidence(evidence: EvidenceStore, case: ReviewCase, audit: Iterable[AuditEntry]) -> list[TamperedFile]:
    """The case's files whose bytes differ from its record, or are missing, by name.

    ``sha256_of`` hashes a local file's bytes, and reads an S3 object's stored sha256 instead of
    downloading it (the page and every decision ask); `patrol verify` and the bundle hash bytes.
    """
    acknowledged = {(file["name"], file["actual_sha256"]) for entry in audit if entry.action == ACKNOWLEDGE_ACTION
                    for file in entry.detail["files"]}
    found = []
    for name, item in sorted(case.record.evidence.items()):
        try:
            actual: str | None = evidence.sha256_of(item.key)
        except KeyError:
            actual = None
        if actual != item.sha256:
            found.append(TamperedFile(name, item.sha256, actual, (name, actual) in acknowledged))
    return found
