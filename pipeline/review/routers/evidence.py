"""A case's evidence, one file at a time or as a bundle; every look is an audit entry. A supervisor
acknowledges evidence that no longer matches its record here, so the case can be decided."""

from __future__ import annotations

import hashlib
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import RedirectResponse

from pipeline.review.audit import now_iso
from pipeline.review.bundle import build_bundle
from pipeline.review.errors import Conflict, NotFound
from pipeline.review.evidence_check import ACKNOWLEDGE_ACTION
from pipeline.review.routers.dependencies import (
    CASE_ERRORS,
    DECISION_ERRORS,
    CaseId,
    Review,
    Reviewer,
    Supervisor,
    refusal,
)
from pipeline.review.schemas import AcknowledgeTamperingIn, CaseDetail

router = APIRouter(prefix="/cases", tags=["evidence"])
NO_STORE = {"Cache-Control": "private, no-store"}


@router.get(
    "/{case_id}/evidence/{name}",
    responses={**CASE_ERRORS, 200: {"content": {"image/jpeg": {}, "video/mp4": {}, "application/json": {}},
                                    "description": "The file (local evidence store)"},
               307: {"description": "A short-lived presigned URL (S3 evidence store)"}},
    response_class=Response,
    summary="One evidence file of a case, by its name in the case (frame.jpg, clip.mp4, ...)",
)
def evidence_file(
    case_id: CaseId,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")],
    caller: Reviewer,
    review: Review,
) -> Response:
    case = review.store.cases.get(case_id)
    # The key comes from the case's own record, never from the request: nothing else can be reached.
    item = case.record.evidence.get(name)
    if item is None:
        raise NotFound(f"case {case_id} has no evidence named {name}")
    missing = f"evidence {name} of case {case_id} is missing from the evidence store"
    try:
        url = review.evidence.url_for(item.key, review.settings.evidence_url_expiry_s)
    except KeyError:
        raise NotFound(missing) from None
    detail = {"name": name, "key": item.key, "recorded_sha256": item.sha256}
    if url is not None:
        review.store.audit.record_event(caller.user.name, "evidence_view", case_id, {**detail, "via": "presigned"})
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT, headers=NO_STORE)
    try:
        data = review.evidence.get(item.key)
    except KeyError:
        raise NotFound(missing) from None
    actual = hashlib.sha256(data).hexdigest()
    review.store.audit.record_event(caller.user.name, "evidence_view", case_id,
                                    {**detail, "intact": actual == item.sha256})
    # no-store: every look at the evidence reaches the server and so the audit trail.
    return Response(data, media_type=item.content_type,
                    headers={**NO_STORE, "X-Evidence-Sha256": actual,
                             "X-Evidence-Intact": str(actual == item.sha256).lower()})


@router.get("/{case_id}/bundle", response_class=Response, responses={
    **CASE_ERRORS, 200: {"content": {"application/zip": {}}, "description": "Evidence, case, audit, checksums"}},
    summary="Export the case as a zip (evidence, metadata, audit entries, signed head, SHA256SUMS)")
def export_bundle(case_id: CaseId, caller: Reviewer, review: Review) -> Response:
    case = review.store.cases.get(case_id)
    exported_at = now_iso()
    entry = review.store.audit.record_event(caller.user.name, "bundle_export", case_id,
                                            {"files": sorted(case.record.evidence), "exported_at": exported_at})
    archive = build_bundle(case, review.evidence, review.store.audit.entries(case_id),
                           review.notes.notes(case_id), exported_by=caller.user.name, exported_at=exported_at,
                           signed_head=review.signer.head(entry), public_key_pem=review.signer.public_key_pem)
    filename = f"{case_id}-bundle.zip"
    return Response(archive, media_type="application/zip", headers={
        **NO_STORE, "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}"})


@router.post("/{case_id}/acknowledge-tampering", response_model=CaseDetail, responses={
    **DECISION_ERRORS, **refusal(409, "No evidence of the case differs from its record, or all is acknowledged")},
    summary="确认知悉证据异常 (supervisor): the case may be decided on evidence that no longer matches its record")
def acknowledge_tampering(case_id: CaseId, body: AcknowledgeTamperingIn, caller: Supervisor,
                          review: Review) -> CaseDetail:
    case = review.store.cases.get(case_id)
    files = [file for file in review.tampered_evidence(case) if not file.acknowledged]
    if not files:
        raise Conflict(f"case {case_id}: no evidence file awaits acknowledgement")
    review.store.audit.record_event(caller.user.name, ACKNOWLEDGE_ACTION, case_id,
                                    {"files": [file.to_detail() for file in files], "note": body.note.strip()})
    return review.case_detail(case)
