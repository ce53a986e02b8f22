"""A case bundle: one zip with everything needed to show a case to someone outside the system.

Layout: ``evidence/<name>`` (the stored files as they are: the evidence filed with the case, and
once it is in its 处置流程 the field photos of its disposals and the after-photos of its camera
rechecks), ``case.json`` (record, review state, notes, the plate in force: an officer's correction
beside the machine's read, and the loop: 立案号, unit, deadline, steps and who took them, overdue,
time to close, each photo's recorded sha256 and finding; dossier_loop.py), ``audit.jsonl`` (the
case's audit entries, this export's own included), ``signed_head.json`` (this export's entry, the
chain's head then, signed with the service's Ed25519 key) and ``audit-public-key.pem`` (that key's
public half), ``manifest.json`` (each file's sha256 and, for evidence, whether it still matches the
sha256 filed with the case), and ``SHA256SUMS`` (checkable with ``sha256sum -c``). Evidence is
listed with the sha256 its case record holds (a photo of the loop: the sha256 recorded when it was
filed), never one taken from its bytes now: a file changed since shows up as FAILED there, and in
``TAMPERED.txt``.
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
from pipeline.review.dossier_loop import LoopHistory
from pipeline.review.evidence_check import read_evidence
from pipeline.review.signed_heads import SignedHead
from pipeline.types import CaseNote

TAMPERED_HEADER = ("证据文件校验失败：以下证据文件与案件记录中的 sha256 不符或已缺失。"
                   "SHA256SUMS 列出的是案件记录中的 sha256。\n"
                   "Evidence that no longer matches the sha256 in the case record; "
                   "SHA256SUMS lists the recorded sha256.\n")


def build_bundle(case: ReviewCase, evidence: EvidenceStore, audit: list[AuditEntry], notes: list[CaseNote] | None,
                 *, exported_by: str, exported_at: str, signed_head: SignedHead, public_key_pem: str,
                 loop: LoopHistory | None = None) -> bytes:
    """``loop``: the case's 处置流程 with its photos (dossier_loop.py); None before 立案."""
    files: dict[str, bytes] = {}
    recorded: dict[str, str] = {}  # bundle path of each evidence file -> the sha256 its case record holds
    evidence_checks: list[dict[str, Any]] = []
    tampered: list[str] = []
    for file in [*read_evidence(evidence, case), *(loop.files if loop else ())]:
        path = f"evidence/{file.name}"
        recorded[path] = file.recorded_sha256
        check = {"name": file.name, "key": file.key, "recorded_sha256": file.recorded_sha256}
        if file.data is None:
            evidence_checks.append({**check, "missing": True})
            tampered.append(f"{path}: recorded sha256 {file.recorded_sha256}, missing from the evidence store\n")
            continue
        files[path] = file.data
        evidence_checks.append({**check, "sha256": file.actual_sha256, "intact": file.intact})
        if not file.intact:
            tampered.append(f"{path}: recorded sha256 {file.recorded_sha256}, its bytes here {file.actual_sha256}\n")
    files["case.json"] = _json({
        "record": case.record.to_dict(),
        "record_sha256": case.record_sha256,
        "review": case.review_state(),
        "plate": _plate(case),
        "notes": None if notes is None else [note.to_dict() for note in notes],
        "loop": None if loop is None else loop.to_dict(),
    })
    files["audit.jsonl"] = "".join(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
                                   for entry in audit).encode()
    files["signed_head.json"] = _json({**signed_head.to_dict(), "algorithm": "Ed25519",
                                       "signed_payload": signed_head.payload().decode()})
    files["audit-public-key.pem"] = public_key_pem.encode()
    if tampered:
        files["TAMPERED.txt"] = (TAMPERED_HEADER + "".join(tampered)).encode()
    head = audit[-1] if audit else None
    sums = {path: recorded.get(path) or hashlib.sha256(data).hexdigest() for path, data in files.items()}
    sums.update(recorded)  # a missing file is listed too, so sha256sum -c names it
    files["manifest.json"] = _json({
        "case_id": case.case_id,
        "exported_by": exported_by,
        "exported_at": exported_at,
        "audit_head": {"seq": head.seq, "sha256": head.sha256} if head else None,
        "evidence": evidence_checks,
        "files": sums,
    })
    sums["manifest.json"] = hashlib.sha256(files["manifest.json"]).hexdigest()
    files["SHA256SUMS"] = "".join(f"{digest}  {path}\n" for path, digest in sums.items()).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(f"{case.case_id}/{path}", data)
    return buffer.getvalue()


def _plate(case: ReviewCase) -> dict[str, Any] | None:
    """The plate as the case stands; the record above holds the machine's read as filed."""
    plate = case.plate
    if plate is None:
        return None
    correction = plate.correction
    return {"text": plate.text, "colour": plate.colour.value, "read": plate.read,
            "correction": None if correction is None else {
                "text": correction.text, "colour": correction.colour.value, "by": correction.by, "at": correction.at,
                "reason": correction.reason, "audit_seq": correction.audit_seq}}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode()
