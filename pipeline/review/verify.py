"""`patrol verify`: is the audit chain whole, and is each case's evidence what was filed?

A case holds when: its record hashes to the sha256 its ``case_received`` entry sealed into the
chain; its status and decision are what its last audit entry says they became; and every
evidence file hashes (from its bytes, not from stored metadata) to the sha256 in its record, with
metadata.json listing the same keys and sha256s as the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipeline.evidence import EvidenceStore
from pipeline.review.audit import ChainCheck, first_broken_link
from pipeline.review.cases import ReviewCase, record_sha256
from pipeline.review.store import ReviewStore

METADATA = "metadata.json"


@dataclass(frozen=True)
class VerifyReport:
    chain: ChainCheck
    cases_checked: int
    problems: list[str] = field(default_factory=list)  # in the order found; the chain's first

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: ReviewStore, evidence: EvidenceStore, case_id: str | None = None) -> VerifyReport:
    """Check the whole chain, then one case or every case; errors.NotFound for an unknown ``case_id``."""
    trail = store.audit.entries()
    chain = first_broken_link(trail)
    problems = [chain.problem] if chain.problem else []
    case_ids = [case_id] if case_id else store.cases.all_case_ids()
    if not case_id:
        stored = set(case_ids)
        problems.extend(f"case {entry.case_id}: received (audit seq {entry.seq}) but gone from the review store"
                        for entry in trail if entry.action == "case_received" and entry.case_id not in stored)
    for one in case_ids:
        problems.extend(case_problems(store, evidence, store.cases.get(one)))
    return VerifyReport(chain, len(case_ids), problems)


def case_problems(store: ReviewStore, evidence: EvidenceStore, case: ReviewCase) -> Iterator[str]:
    entries = store.audit.entries(case.case_id)
    received = next((entry for entry in entries if entry.action == "case_received"), None)
    recomputed = record_sha256(case.record)
    if received is None:
        yield f"case {case.case_id}: no case_received entry in the audit trail"
    elif received.detail.get("record_sha256") != recomputed:
        yield (f"case {case.case_id}: its record was changed after it was received (sha256 now {recomputed[:16]}…, "
               f"sealed in audit seq {received.seq} as {str(received.detail.get('record_sha256'))[:16]}…)")
    last_change = next((entry for entry in reversed(entries) if entry.after and "status" in entry.after), None)
    if last_change is not None and last_change.after != _expected_state(last_change.after, case):
        yield (f"case {case.case_id}: review state {_expected_state(last_change.after, case)} differs from what "
               f"audit seq {last_change.seq} ({last_change.action}) recorded: {last_change.after}")
    yield from evidence_problems(evidence, case)


def evidence_problems(evidence: EvidenceStore, case: ReviewCase) -> Iterator[str]:
    for name, item in case.record.evidence.items():
        try:
            data = evidence.get(item.key)
        except KeyError:
            yield f"evidence {item.key}: missing from the evidence store"
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != item.sha256:
            yield f"evidence {item.key}: sha256 is {actual[:16]}…, the case record says {item.sha256[:16]}…"
        elif name == METADATA:
            yield from _metadata_problems(case, item.key, data)


def _metadata_problems(case: ReviewCase, key: str, data: bytes) -> Iterator[str]:
    try:
        listed = json.loads(data)["evidence"]
    except (ValueError, KeyError, TypeError):
        yield f"evidence {key}: not a metadata file with an evidence list"
        return
    for name, item in case.record.evidence.items():
        if name == METADATA:
            continue
        entry = listed.get(name)
        if entry is None or entry.get("key") != item.key or entry.get("sha256") != item.sha256:
            yield f"evidence {key}: its entry for {name} does not match the case record"


def _expected_state(recorded: dict, case: ReviewCase) -> dict:
    # Only the fields the entry recorded: case_received records the status alone.
    state = case.review_state()
    return {name: state.get(name) for name in recorded}

