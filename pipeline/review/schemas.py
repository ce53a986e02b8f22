"""The API's request and response bodies (pydantic), and how a stored case becomes one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pipeline.review.accounts import (
    BADGE_NUMBER_PATTERN,
    MAX_DISPLAY_NAME,
    MIN_PASSWORD_LENGTH,
    USER_NAME_PATTERN,
    User,
)
from pipeline.review.audit import AuditEntry
from pipeline.review.cameras import CameraSnapshot, CameraStatus
from pipeline.review.cases import CaseChanges, CasePage, ReviewCase
from pipeline.review.claims import Claim
from pipeline.review.evidence_check import TamperedFile
from pipeline.review.loop_schemas import LoopOut, evidence_url
from pipeline.review.plate_schemas import PlateOut
from pipeline.review.plates import plate_correctable
from pipeline.review.vocabulary import (
    ACTION_LABELS,
    CAMERA_STATE_LABELS,
    REJECT_REASON_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    AccountRole,
    RejectReason,
    Status,
    violation_label,
)
from pipeline.types import CaseNote

NOTE_MAX = 2000
THUMBNAIL_ORDER = ("crop.jpg", "last_frame.jpg", "annotated.jpg")


class ErrorOut(BaseModel):
    """Every refusal but a request that fails validation (422: FastAPI's list of errors, each naming its field)."""

    detail: str = Field(description="What is wrong, in Chinese, for the officer to read.")
    code: str | None = Field(None, description="What kind of refusal, for a script to branch on: not_found, "
                             "conflict, not_allowed, invalid, case_claimed (someone else holds the case), "
                             "case_changed (the version sent is not the case's), workflow_state (the 处置流程 step "
                             "does not fit the case's state), not_overdue, too_large, unsupported_media (a photo), "
                             "plate_format (a corrected plate that is no Chinese plate). "
                             "Absent on login and role refusals.")


class UserOut(BaseModel):
    name: str
    role: AccountRole
    role_label: str

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(name=user.name, role=user.role, role_label=ROLE_LABELS[user.role])


class AccountOut(UserOut):
    active: bool = Field(description="false: disabled, the account cannot log in")
    must_change_password: bool = Field(description="an admin reset the password; the user must choose their own")
    display_name: str | None = Field(description="姓名, as officers and dossiers see the account")
    badge_number: str | None = Field(description="执法证号")

    @classmethod
    def of(cls, user: User) -> AccountOut:
        return cls(**UserOut.of(user).model_dump(), active=user.active,
                   must_change_password=user.must_change_password, display_name=user.display_name,
                   badge_number=user.badge_number)


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: float = Field(description="Unix time the token stops working (earlier when left idle).")
    must_change_password: bool = Field(
        description="true: the token works only for POST /api/me/password (and /api/me, /api/logout) until then")
    user: UserOut


class ProfileIn(BaseModel):
    display_name: str | None = Field(None, max_length=MAX_DISPLAY_NAME, description="姓名, e.g. 王小明; null clears")
    badge_number: str | None = Field(None, pattern=BADGE_NUMBER_PATTERN.pattern,
                                     description="执法证号: letters, digits and '-'; null clears")


class NewUserIn(ProfileIn):
    name: str = Field(pattern=USER_NAME_PATTERN.pattern, description="The login name (ASCII), the account's key.")
    role: AccountRole
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class PasswordResetIn(BaseModel):
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024, description="A one-time password.")
    must_change: bool = Field(True, description="The user must choose their own password at the next login.")


class PasswordChangeIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class RoleIn(BaseModel):
    role: AccountRole


class SessionsRevokedOut(BaseModel):
    name: str
    sessions_ended: int = Field(description="How many sessions were open; each stopped working at once.")


class DecisionIn(BaseModel):
    version: int | None = Field(None, description="The case's version as the page deciding saw it (CaseDetail."
                                "version); refused with 409 case_changed when the case has changed since.")


class ConfirmIn(DecisionIn):
    note: str = Field("", max_length=NOTE_MAX)


class EscalateIn(DecisionIn):
    note: str = Field("", max_length=NOTE_MAX, description="Why it goes up, e.g. 需要联合执法.")


class RejectIn(DecisionIn):
    reason: RejectReason
    note: str = Field("", max_length=NOTE_MAX, description="Required when the reason is 'other'.")


class DuplicateIn(DecisionIn):
    duplicate_of: str = Field(min_length=1, max_length=128, description="The case this one repeats.")
    note: str = Field("", max_length=NOTE_MAX)


class ReopenIn(DecisionIn):
    note: str = Field(min_length=1, max_length=NOTE_MAX, description="Why the decision is reopened.")


class ClaimIn(BaseModel):
    takeover: bool = Field(False, description="A supervisor takes over someone else's claim (audited).")


class ClaimOut(BaseModel):
    holder: str = Field(description="The login name of the account holding the case.")
    holder_name: str = Field(description="Its 姓名, or its login name when it has none.")
    expires_at: str = Field(description="ISO 8601 UTC: the claim ends then unless renewed, released or decided.")

    @classmethod
    def of(cls, claim: Claim | None) -> ClaimOut | None:
        if claim is None:
            return None
        return cls(holder=claim.holder, holder_name=claim.holder_name,
                   expires_at=claim.expires.isoformat(timespec="seconds"))


class CaseClaimOut(BaseModel):
    case_id: str
    claim: ClaimOut | None = Field(description="null: nobody holds the case")


class AcknowledgeTamperingIn(BaseModel):
    note: str = Field("", max_length=NOTE_MAX, description="What the supervisor found, e.g. 已联系设备厂家核实.")


class AssignIn(BaseModel):
    assignee: str | None = Field(None, max_length=64, description="An officer or supervisor; null unassigns.")


class EvidenceOut(BaseModel):
    name: str
    content_type: str
    sha256: str
    url: str


class TamperedOut(BaseModel):
    name: str
    recorded_sha256: str
    actual_sha256: str | None = Field(description="null when the file is gone from the evidence store")
    acknowledged: bool = Field(description="a supervisor acknowledged these bytes; the case may then be decided")

    @classmethod
    def of(cls, file: TamperedFile) -> TamperedOut:
        return cls(name=file.name, recorded_sha256=file.recorded_sha256, actual_sha256=file.actual_sha256,
                   acknowledged=file.acknowledged)


class NoteOut(BaseModel):
    note_id: str
    at_wall: str
    author: str
    kind: str
    text: str

    @classmethod
    def of(cls, note: CaseNote) -> NoteOut:
        return cls(**note.to_dict())


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    action_label: str
    case_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any]
    prev_sha256: str
    sha256: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(**entry.to_dict(), action_label=ACTION_LABELS.get(entry.action, entry.action))


class CaseSummary(BaseModel):
    case_id: str
    violation: str
    violation_label: str
    event_code: str
    status: Status
    status_label: str
    camera_id: str
    camera_name: str
    zone_id: str
    confirmed_wall: str
    dwell_s: float
    score: float
    address: str | None
    grid_code: str | None
    assignee: str | None
    claim: ClaimOut | None = Field(description="who holds the case now (认领); null: nobody")
    thumbnail_url: str | None
    case_number: str | None = Field(None, description="案件编号 given at 立案, e.g. 双山-20261207-0001; null before")
    overdue: bool = Field(False, description="超期: dispatched and past its deadline, as of this answer")
    recheck_failed: bool = Field(False, description="复核未通过: the latest camera recheck found the violation "
                                 "still there at or after its deadline")
    current_plate: PlateOut | None = Field(None, description="车牌 as the case stands: an officer's correction over "
                                           "the machine's read, both given; null: none read nor added")
    version: int = Field(0, description="Send with a decision: it is refused if the case changed since (409)")

    @classmethod
    def of(cls, case: ReviewCase) -> CaseSummary:
        record = case.record
        thumbnail = next((name for name in THUMBNAIL_ORDER if name in record.evidence), None)
        return cls(
            case_id=record.case_id, violation=record.violation, violation_label=violation_label(record.violation),
            event_code=record.event_code, status=case.status, status_label=STATUS_LABELS[case.status],
            camera_id=record.camera_id, camera_name=record.camera_name, zone_id=record.zone_id,
            confirmed_wall=record.confirmed_wall, dwell_s=record.dwell_s, score=record.score,
            address=record.location.get("address"), grid_code=record.location.get("grid_code"),
            assignee=case.assignee, claim=ClaimOut.of(case.claim),
            thumbnail_url=evidence_url(record.case_id, thumbnail) if thumbnail else None,
            case_number=case.loop.case_number if case.loop else None, overdue=bool(case.loop and case.loop.overdue),
            recheck_failed=bool(case.loop and case.loop.recheck_failed), current_plate=PlateOut.of(case),
            version=case.version)


class CasePageOut(BaseModel):
    items: list[CaseSummary]
    total: int
    page: int
    per_page: int
    pages: int
    cursor: int = Field(description="Pass as ?after= to /api/cases/changes to hear of what changes after this list")

    @classmethod
    def of(cls, page: CasePage) -> CasePageOut:
        return cls(items=[CaseSummary.of(case) for case in page.cases], total=page.total, page=page.page,
                   per_page=page.per_page, pages=max(1, -(-page.total // page.per_page)), cursor=page.cursor)


class CaseChangesOut(BaseModel):
    cursor: int = Field(description="The ?after= of the next look")
    new: list[CaseSummary] = Field(description="Cases received since, matching the filter, newest first")
    changed: list[CaseSummary] = Field(description="Cases changed since (claimed, decided, …), matching the filter")
    gone: list[str] = Field(description="Ids of cases changed since that no longer match the filter")

    @classmethod
    def of(cls, changes: CaseChanges) -> CaseChangesOut:
        return cls(cursor=changes.cursor, new=[CaseSummary.of(case) for case in changes.new],
                   changed=[CaseSummary.of(case) for case in changes.changed], gone=changes.gone)


class DecisionOut(BaseModel):
    decided_by: str | None
    decided_by_name: str | None = Field(description="the decider's 姓名 when they decided, from the audit entry")
    decided_by_badge: str | None = Field(description="the decider's 执法证号 when they decided")
    decided_at: str | None
    reject_reason: RejectReason | None
    reject_reason_label: str | None
    note: str | None
    duplicate_of: str | None


class LocationOut(BaseModel):
    lat: float | None
    lon: float | None
    address: str | None
    grid_code: str | None


class CaseDetail(CaseSummary):
    event_name: str
    first_seen_wall: str
    track_id: int
    bbox: list[float]
    model: dict[str, Any]
    location: LocationOut
    decision: DecisionOut
    evidence: list[EvidenceOut]
    tampered_evidence: list[TamperedOut] = Field(
        description="evidence files whose bytes no longer match the sha256 in the case record, or are missing")
    notes: list[NoteOut] | None = Field(description="null when the case queue cannot be reached right now")
    audit: list[AuditEntryOut]
    record_sha256: str
    plate: dict[str, Any] | None = Field(None, description="a parking case's plate as the machine read it, as filed: "
                                         "text, confidence, colour, frame (current_plate: as corrected)")
    plate_correctable: bool = Field(False, description="the page offers 更正车牌 (POST /api/cases/{id}/plate)")
    loop: LoopOut | None = Field(None, description="处置流程 from 立案 on; null before")
    evidence_stream: str | None = Field(None, description="a camera with a sub-stream: which stream its photos are "
                                        "from, main (full resolution) or sub (the main stream was down); null else")
    clip_short_s: float | None = Field(None, description="the clip ends this many seconds after confirmation, its "
                                       "post-roll cut short (the worker stopped in it); null when the clip is whole")

    @classmethod
    def build(cls, case: ReviewCase, notes: list[CaseNote] | None, audit: list[AuditEntry],
              tampered: list[TamperedFile]) -> CaseDetail:
        record = case.record
        location = record.location
        return cls(
            **CaseSummary.of(case).model_dump(),
            event_name=record.event_name, first_seen_wall=record.first_seen_wall, track_id=record.track_id,
            bbox=list(record.bbox), model=dict(record.model), record_sha256=case.record_sha256, plate=record.plate,
            loop=LoopOut.of(case), plate_correctable=plate_correctable(case.status, record.violation, case.plate),
            evidence_stream=record.evidence_stream,
            clip_short_s=None if record.clip_until_s is None else max(0.0, record.clip_until_s - record.confirmed_s),
            location=LocationOut(lat=location.get("lat"), lon=location.get("lon"), address=location.get("address"),
                                 grid_code=location.get("grid_code")),
            decision=DecisionOut(
                decided_by=case.decided_by, **_decider_identity(case, audit), decided_at=case.decided_at,
                reject_reason=case.reject_reason,
                reject_reason_label=REJECT_REASON_LABELS[case.reject_reason] if case.reject_reason else None,
                note=case.decision_note, duplicate_of=case.duplicate_of),
            evidence=[EvidenceOut(name=name, content_type=item.content_type, sha256=item.sha256,
                                  url=evidence_url(record.case_id, name))
                      for name, item in sorted(record.evidence.items())],
            tampered_evidence=[TamperedOut.of(file) for file in tampered],
            notes=None if notes is None else [NoteOut.of(note) for note in notes],
            audit=[AuditEntryOut.of(entry) for entry in audit])


class CameraOut(BaseModel):
    camera_id: str
    name: str
    address: str | None
    grid_code: str | None
    lat: float | None
    lon: float | None
    zones: list[str]
    state: str
    state_label: str
    health: str
    worker: str | None
    received_fps: float | None
    analysed_fps: float | None
    lag_s: float | None
    last_frame_age_s: float | None
    reconnects_last_hour: float | None

    @classmethod
    def of(cls, camera: CameraStatus) -> CameraOut:
        figures = camera.figures
        return cls(camera_id=camera.camera_id, name=camera.name, address=camera.address, grid_code=camera.grid_code,
                   lat=camera.lat, lon=camera.lon, zones=camera.zones, state=camera.state,
                   state_label=CAMERA_STATE_LABELS.get(camera.state, camera.state), health=camera.health,
                   worker=camera.worker, received_fps=figures.get("received_fps"),
                   analysed_fps=figures.get("analysed_fps"), lag_s=figures.get("lag_s"),
                   last_frame_age_s=camera.last_frame_age_s, reconnects_last_hour=figures.get("reconnects_last_hour"))


class WorkerOut(BaseModel):
    url: str
    ok: bool
    error: str | None


class CameraBoardOut(BaseModel):
    cameras: list[CameraOut]
    workers: list[WorkerOut]

    @classmethod
    def of(cls, snapshot: CameraSnapshot) -> CameraBoardOut:
        return cls(cameras=[CameraOut.of(camera) for camera in snapshot.cameras],
                   workers=[WorkerOut(url=w.url, ok=w.ok, error=w.error) for w in snapshot.workers])


class VocabularyOut(BaseModel):
    statuses: dict[str, str]
    violations: dict[str, str]
    reject_reasons: dict[str, str]
    roles: dict[str, str]


def _decider_identity(case: ReviewCase, audit: list[AuditEntry]) -> dict[str, str | None]:
    """The decider's name and badge as the entry that made them the decider recorded them."""
    decision = next((entry for entry in reversed(audit) if entry.before and entry.after and case.decided_by
                     and entry.after.get("decided_by") == case.decided_by != entry.before.get("decided_by")), None)
    detail = decision.detail if decision else {}
    return {"decided_by_name": detail.get("display_name"), "decided_by_badge": detail.get("badge_number")}
