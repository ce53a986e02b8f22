"""A case bundle: one zip with everything needed to show a case to someone outside the system.

Layout: ``evidence/<name>`` (the stored files as they are), ``case.json`` (record, review state,
notes), ``audit.jsonl`` (the case's audit entries, this export's own included), ``manifest.json``
(each file's sha256 and, for evidence, whether it still matches the sha256 filed with the case),
and ``SHA256SUMS`` (checkable with ``sha256sum -c``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

from pipeline.evidence import EvidenceStore
from pipeline.review.audit import AuditEntry
from pipeline.review.cases import ReviewCase
from pipeline.types import CaseNote


def build_bundle(case: ReviewCase, evidence: EvidenceStore, audit: list[AuditEntry], notes: list[CaseNote] | None,
                 *, exported_by: str, exported_at: str) -> bytes:
    files: dict[str, bytes] = {}
    evidence_checks: list[dict[str, Any]] = []
    for name, item in sorted(case.record.evidence.items()):
        try:
            data = evidence.get(item.key)
        except KeyError:
            evidence_checks.append({"name": name, "key": item.key, "recorded_sha256": item.sha256, "missing": True})
            continue
        files[f"evidence/{name}"] = data
        actual = hashlib.sha256(data).hexdigest()
        evidence_checks.append({"name": name, "key": item.key, "recorded_sha256": item.sha256,
                                "sha256": actual, "intact": actual == item.sha256})
    files["case.json"] = _json({
        "record": case.record.to_dict(),
        "record_sha256": case.record_sha256,
        "review": case.review_state(),
        "notes": None if notes is None else [note.to_dict() for note in notes],
    })
    files["audit.jsonl"] = "".join(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
                                   for entry in audit).encode()
    head = audit[-1] if audit else None
    files["manifest.json"] = _json({
        "case_id": case.case_id,
        "exported_by": exported_by,
        "exported_at": exported_at,
        "audit_head": {"seq": head.seq, "sha256": head.sha256} if head else None,
        "evidence": evidence_checks,
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in files.items()},
    })
    files["SHA256SUMS"] = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n"
                                  for path, data in files.items()).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(f"{case.case_id}/{path}", data)
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode()
