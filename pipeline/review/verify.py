"""`patrol verify`: is the audit chain whole and the one its signed heads vouch for, and is each
case's evidence what was filed?

The chain must hold every head signed outside the database (signed_heads.py) and every head a
third party noted down (``--expect-head``), with the same sha256: a chain cut short or rewritten
and re-sealed recomputes cleanly, but not to the heads signed before.

A case holds when: its record hashes to the sha256 its ``case_received`` entry sealed into the
chain; its status and decision are what its last audit entry says they became, and its plate
correction in force what its last ``plate_correct`` entry made it (none without one); and every
evidence file hashes (from its bytes, not from stored metadata) to the sha256 in its record, with
metadata.json listing the same keys and sha256s as the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.evidence import EvidenceStore
from pipeline.review.audit import AuditEntry, ChainCheck, first_broken_link
from pipeline.review.cases import ReviewCase, record_sha256
from pipeline.review.plates import CORRECT_ACTION
from pipeline.review.signed_heads import HeadsCheck, check_signed_heads
from pipeline.review.store import ReviewStore

METADATA = "metadata.json"


@dataclass(frozen=True)
class VerifyReport:
    chain: ChainCheck
    heads: HeadsCheck
    cases_checked: int
    problems: list[str] = field(default_factory=list)  # in the order found; the chain's first

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: ReviewStore, evidence: EvidenceStore, case_id: str | None = None, *, key_path: Path,
           heads_path: Path, expected_heads: Sequence[tuple[int, str]] = ()) -> VerifyReport:
    """Check the whole chain against the signed heads (with the public half of ``key_path``) and the
    ``expected_heads`` (seq, sha256), then one case or every case; errors.NotFound for an unknown ``case_id``."""
    trail = store.audit.entries()
    chain = first_broken_link(trail)
    heads = check_signed_heads(trail, key_path, heads_path)
    problems = [chain.problem] if chain.problem else []
    problems.extend(heads.problems)
    problems.extend(problem for seq, sha256 in expected_heads
                    if (problem := expected_head_problem(trail, seq, sha256)) is not None)
    case_ids = [case_id] if case_id else store.cases.all_case_ids()
    if not case_id:
        stored = set(case_ids)
        problems.extend(f"case {entry.case_id}: received (audit seq {entry.seq}) but gone from the review store"
                        for entry in trail if entry.action == "case_received" and entry.case_id not in stored)
    for one in case_ids:
        problems.extend(case_problems(store, evidence, store.cases.get(one)))
    return VerifyReport(chain, heads, len(case_ids), problems)


def expected_head_problem(trail: Sequence[AuditEntry], seq: int, sha256: str) -> str | None:
    """Whether the chain still holds a head noted down outside the system (a print-out, a bundle)."""
    entry = next((entry for entry in trail if entry.seq == seq), None)
    if entry is None:
        end = trail[-1].seq if trail else 0
        return (f"expected head seq {seq} (sha256 {sha256[:16]}…) is not in the audit chain, which ends at "
                f"seq {end}: the chain was truncated")
    if entry.sha256 != sha256:
        return (f"expected head seq {seq}: the chain holds sha256 {entry.sha256[:16]}… there, not the "
                f"{sha256[:16]}… noted down: the chain was rewritten")
    return None


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
    yield from plate_problems(case, entries)
    yield from evidence_problems(evidence, case)


def plate_problems(case: ReviewCase, entries: Sequence[AuditEntry]) -> Iterator[str]:
    """The correction in force is the one the case's latest plate_correct entry sealed."""
    sealed = next((entry for entry in reversed(entries) if entry.action == CORRECT_ACTION), None)
    shown = case.plate_correction
    if sealed is None and shown is None:
        return
    if sealed is None:
        yield f"case {case.case_id}: plate corrected to {shown.text} without a plate_correct entry in the audit trail"
    elif shown is None or shown.audit_seq != sealed.seq or sealed.after != case.plate.audit_state():
        now = f"{shown.text} ({shown.colour}, audit seq {shown.audit_seq})" if shown else "no correction"
        yield f"case {case.case_id}: plate shows {now}, not what audit seq {sealed.seq} recorded: {sealed.after}"


def evidence_problems(evidence: EvidenceStore, case: ReviewCase) -> Iterator[str]:
    # The field photos of its disposal and its rechecks' after-photos too: their sha256s are in the review
    # state the trail holds.
    for name, item in case.files().items():
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

