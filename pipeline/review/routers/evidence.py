"""A case's evidence, one file at a time (a byte range of it for a clip being scrubbed), as a bundle or
as a printable dossier; every look is an audit entry. A supervisor acknowledges evidence that no
longer matches its record here, so the case can be decided."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Response, status
from fastapi.responses import RedirectResponse

from pipeline.review.audit import now_iso
from pipeline.review.bundle import build_bundle
from pipeline.review.byte_range import ByteRange, RangeNotSatisfiable, requested_range
from pipeline.review.dossier import (
    NO_FONT_MESSAGE,
    DossierExport,
    Officer,
    build_dossier,
    deciding_officer,
    find_dossier_font,
)
from pipeline.review.dossier_loop import LoopHistory
from pipeline.review.errors import Conflict, NotFound
from pipeline.review.evidence_check import ACKNOWLEDGE_ACTION, read_evidence
from pipeline.review.routers.dependencies import (
    CASE_ERRORS,
    DECISION_ERRORS,
    NO_STORE,
    CaseId,
    Review,
    Reviewer,
    Supervisor,
    download_headers,
    refusal,
)
from pipeline.review.schemas import AcknowledgeTamperingIn, CaseDetail
from pipeline.review.services import ReviewServices
from pipeline.types import EvidenceItem

router = APIRouter(prefix="/cases", tags=["evidence"])
ACCEPT_RANGES = {"Accept-Ranges": "bytes"}
EVIDENCE_TYPES = {"image/jpeg": {}, "image/png": {}, "video/mp4": {}, "application/json": {}}  # png: disposal photos


@router.get(
    "/{case_id}/evidence/{name}",
    responses={**CASE_ERRORS, 200: {"content": EVIDENCE_TYPES, "description": "The file (local evidence store)"},
               206: {"content": EVIDENCE_TYPES, "description": "The byte range asked for (local evidence store)"},
               307: {"description": "A short-lived presigned URL (S3 evidence store, which answers ranges itself)"},
               **refusal(416, "The range starts past the file's end; Content-Range gives its size")},
    response_class=Response,
    summary="One evidence file of a case, by its name in the case (frame.jpg, clip.mp4, ...)",
)
def evidence_file(
    case_id: CaseId,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")],
    caller: Reviewer,
    review: Review,
    range_: Annotated[str | None, Header(alias="range", description="bytes=FIRST-LAST, bytes=FIRST- or bytes=-N; "
                                         "any other form is answered with the whole file")] = None,
) -> Response:
    case = review.store.cases.get(case_id)
    # The key comes from the case's own record (or its disposal photos), never from the request:
    # nothing else can be reached.
    item = case.files().get(name)
    if item is None:
        raise NotFound(f"案件 {case_id} 没有名为 {name} 的证据文件")
    missing = f"案件 {case_id} 的证据文件 {name} 在证据存储中缺失"
    try:
        url = review.evidence.url_for(item.key, review.settings.evidence_url_expiry_s)
    except KeyError:
        raise NotFound(missing) from None
    detail = {"name": name, "key": item.key, "recorded_sha256": item.sha256}
    if url is not None:
        review.store.audit.record_event(caller.user.name, "evidence_view", case_id, {**detail, "via": "presigned"})
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT, headers=NO_STORE)
    try:
        part = None if range_ is None else _requested_part(review, item, range_)
        data = review.evidence.get(item.key) if part is None else review.evidence.get_range(
            item.key, part.first, part.length)
    except KeyError:
        raise NotFound(missing) from None
    if part is not None:
        # A part says nothing of the whole file's sha256; the case page, which asks for the parts, checks it.
        review.store.audit.record_event(caller.user.name, "evidence_view", case_id,
                                        {**detail, "range": part.content_range})
        return Response(data, status_code=status.HTTP_206_PARTIAL_CONTENT, media_type=item.content_type,
                        headers={**NO_STORE, **ACCEPT_RANGES, "Content-Range": part.content_range})
    actual = hashlib.sha256(data).hexdigest()
    review.store.audit.record_event(caller.user.name, "evidence_view", case_id,
                                    {**detail, "intact": actual == item.sha256})
    return Response(data, media_type=item.content_type,
                    headers={**NO_STORE, **ACCEPT_RANGES, "X-Evidence-Sha256": actual,
                             "X-Evidence-Intact": str(actual == item.sha256).lower()})


def _requested_part(review: ReviewServices, item: EvidenceItem, header: str) -> ByteRange | None:
    """The part of the file a Range header asks for; None: the whole file. KeyError when it is gone."""
    size = review.evidence.size_of(item.key)
    try:
        return requested_range(header, size)
    except RangeNotSatisfiable:
        raise HTTPException(status.HTTP_416_RANGE_NOT_SATISFIABLE,
                            f"请求的字节范围超出证据文件（共 {size} 字节）", headers={"Content-Range": f"bytes */{size}"},
                            ) from None


@router.get("/{case_id}/bundle", response_class=Response, responses={
    **CASE_ERRORS, 200: {"content": {"application/zip": {}}, "description": "Evidence, case, audit, checksums"}},
    summary="Export the case as a zip (evidence, metadata, audit entries, signed head, SHA256SUMS)")
def export_bundle(case_id: CaseId, caller: Reviewer, review: Review) -> Response:
    case = review.store.cases.get(case_id)
    exported_at = now_iso()
    entry = review.store.audit.record_event(caller.user.name, "bundle_export", case_id,
                                            {"files": sorted(case.files()), "exported_at": exported_at})
    audit = review.store.audit.entries(case_id)
    archive = build_bundle(case, review.evidence, audit,
                           review.notes.notes(case_id), exported_by=caller.user.name, exported_at=exported_at,
                           signed_head=review.signer.head(entry), public_key_pem=review.signer.public_key_pem,
                           loop=LoopHistory.of(case, audit, review.store.accounts.users(), review.evidence))
    return Response(archive, media_type="application/zip", headers=download_headers(f"{case_id}-bundle.zip"))


@router.get("/{case_id}/dossier.pdf", response_class=Response, responses={
    **CASE_ERRORS,
    200: {"content": {"application/pdf": {}}, "description": "Photos, facts, decision, 处置经过, audit, sha256s"},
    **refusal(503, "The server has no CJK font to print Chinese with; the detail names the package to install")},
    summary="案卷: the case as one printable PDF (photos, place and time, decision, 处置经过, audit excerpt, sha256s)")
def export_dossier(case_id: CaseId, caller: Reviewer, review: Review) -> Response:
    case = review.store.cases.get(case_id)
    font = find_dossier_font()
    if font is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_FONT_MESSAGE)
    exported_at = now_iso()
    # Recorded first, so the dossier's audit excerpt ends with its own export.
    entry = review.store.audit.record_event(caller.user.name, "dossier_export", case_id,
                                            {"files": sorted(case.files()), "exported_at": exported_at})
    audit = review.store.audit.entries(case_id)
    accounts = review.store.accounts.users()
    export = DossierExport(Officer.of(caller.user), exported_at, review.settings.display_timezone,
                           signed_head=review.signer.head(entry), public_key_pem=review.signer.public_key_pem)
    pdf = build_dossier(case, read_evidence(review.evidence, case), audit,
                        decided_by=deciding_officer(case, audit, accounts), export=export,
                        font_path=font, loop=LoopHistory.of(case, audit, accounts, review.evidence))
    return Response(pdf, media_type="application/pdf", headers=download_headers(f"{case_id}-dossier.pdf", inline=True))


@router.post("/{case_id}/acknowledge-tampering", response_model=CaseDetail, responses={
    **DECISION_ERRORS, **refusal(409, "No evidence of the case differs from its record, or all is acknowledged")},
    summary="确认知悉证据异常 (supervisor): the case may be decided on evidence that no longer matches its record")
def acknowledge_tampering(case_id: CaseId, body: AcknowledgeTamperingIn, caller: Supervisor,
                          review: Review) -> CaseDetail:
    case = review.store.cases.get(case_id)
    files = [file for file in review.tampered_evidence(case) if not file.acknowledged]
    if not files:
        raise Conflict(f"案件 {case_id} 没有待确认知悉的异常证据文件")
    review.store.audit.record_event(caller.user.name, ACKNOWLEDGE_ACTION, case_id,
                                    {"files": [file.to_detail() for file in files], "note": body.note.strip()})
    return review.case_detail(case)
