"""The review service's fixed vocabulary: English values in code and data, Chinese labels for officers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S
from pipeline.vocabulary import CameraState, ViolationKind


class Status(StrEnum):
    NEW = "new"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    DUPLICATE = "duplicate"
    # The closed loop after confirmation (workflow.py): 立案, 派遣, 处置, 核查, 结案.
    FILED = "filed"
    DISPATCHED = "dispatched"
    DISPOSED = "disposed"
    VERIFIED = "verified"
    CLOSED = "closed"


IN_LOOP = frozenset({Status.FILED, Status.DISPATCHED, Status.DISPOSED, Status.VERIFIED, Status.CLOSED})
CONFIRMED_VIOLATIONS = frozenset({Status.CONFIRMED, *IN_LOOP})  # a filed case is a confirmed violation still


# "Account" because pipeline.types.Role is another thing: what a detected object is.
class AccountRole(StrEnum):
    """Separate duties, not a ladder: an admin manages accounts and cameras but decides no case,
    so whoever can create users cannot also create decisions under them."""

    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class RejectReason(StrEnum):
    NOT_A_VIOLATION = "not_a_violation"
    DETECTOR_ERROR = "detector_error"
    OUTSIDE_ZONE = "outside_zone"
    AUTHORISED = "authorised"
    OTHER = "other"


class Decision(StrEnum):
    """What an officer can do to a new case, and the status each leads to."""

    CONFIRM = "confirm"
    REJECT = "reject"
    ESCALATE = "escalate"
    DUPLICATE = "duplicate"

    @property
    def status(self) -> Status:
        return _STATUS_OF_DECISION[self]


_STATUS_OF_DECISION = {
    Decision.CONFIRM: Status.CONFIRMED,
    Decision.REJECT: Status.REJECTED,
    Decision.ESCALATE: Status.ESCALATED,
    Decision.DUPLICATE: Status.DUPLICATE,
}

STATUS_LABELS = {
    Status.NEW: "待审核",
    Status.CONFIRMED: "已确认",
    Status.REJECTED: "已驳回",
    Status.ESCALATED: "已上报",
    Status.DUPLICATE: "重复",
    Status.FILED: "已立案",
    Status.DISPATCHED: "已派遣",
    Status.DISPOSED: "已处置",
    Status.VERIFIED: "已核查",
    Status.CLOSED: "已结案",
}
OVERDUE_LABEL = "超期"  # not a status: a dispatched case past its deadline, computed on read
RECHECK_FAILED_LABEL = "复核未通过"  # not a status: the camera found the violation still there past the deadline
VIOLATION_LABELS = {
    ViolationKind.ILLEGAL_PARKING: "机动车乱停放",
    ViolationKind.STALL_ENCROACHMENT: "占道经营",
    ViolationKind.BIN_OVERFLOW: "垃圾满溢",
    ViolationKind.NONMOTOR_PARKING: "非机动车乱停放",
    ViolationKind.CAMERA_FAULT: "故障报警",
}
REJECT_REASON_LABELS = {
    RejectReason.NOT_A_VIOLATION: "非违规",
    RejectReason.DETECTOR_ERROR: "误检",
    RejectReason.OUTSIDE_ZONE: "不在管控区",
    RejectReason.AUTHORISED: "已审批",
    RejectReason.OTHER: "其他",
}


class PlateColour(StrEnum):
    """A plate's background (pipeline.evidence.plate reads blue, green, yellow or unknown; an officer may say more)."""

    BLUE = "blue"
    GREEN = "green"
    YELLOW = "yellow"
    WHITE = "white"
    BLACK = "black"
    UNKNOWN = "unknown"


PLATE_COLOUR_LABELS = {
    PlateColour.BLUE: "蓝牌",
    PlateColour.GREEN: "绿牌（新能源）",
    PlateColour.YELLOW: "黄牌",
    PlateColour.WHITE: "白牌",
    PlateColour.BLACK: "黑牌",
    PlateColour.UNKNOWN: "颜色未识别",
}
ROLE_LABELS = {AccountRole.OFFICER: "执法队员", AccountRole.SUPERVISOR: "中队长", AccountRole.ADMIN: "系统管理员"}
# "unknown": no worker reports the camera
CAMERA_STATE_LABELS = {**{state: state.label for state in CameraState}, "unknown": "未知"}
ACTION_LABELS = {
    "case_received": "接收案件",
    "confirm": "确认",
    "reject": "驳回",
    "escalate": "上报",
    "duplicate": "标记重复",
    "reopen": "重新打开",
    "assign": "分派",
    "file": "立案",
    "dispatch": "派遣",
    "redispatch": "超期改派",
    "dispose": "上报处置",
    "verify": "核查通过",
    "send_back": "核查退回",
    "close": "结案",
    "camera_recheck": "摄像头复核",
    "plate_correct": "更正车牌",
    "claim": "认领",
    "claim_release": "释放认领",
    "evidence_view": "查看证据",
    "evidence_tamper_ack": "确认知悉证据异常",
    "bundle_export": "导出证据包",
    "dossier_export": "导出案卷",
    "dataset_export": "导出训练数据",
    "user_add": "新增用户",
    "password_reset": "重置密码",
    "password_change": "修改密码",
    "user_disable": "停用账号",
    "user_enable": "启用账号",
    "role_change": "修改角色",
    "profile_change": "修改姓名或执法证号",
    "sessions_revoke": "强制下线",
    "login": "登录",
    "login_failed": "登录失败",
    "login_refused": "登录被拒（锁定中）",
}


def violation_label(violation: str) -> str:
    """Chinese name of a violation kind; a kind this table does not know yet is shown as it is."""
    return VIOLATION_LABELS.get(violation, violation)


def clip_coverage(first_seen_wall: str, confirmed_wall: str) -> str:
    """What a case's clip shows, in words. It is cut around the confirmation (render.CLIP_BEFORE_S before
    to CLIP_AFTER_S after), so it shows the first sighting only when that came no earlier."""
    seen_before_s = (datetime.fromisoformat(confirmed_wall) - datetime.fromisoformat(first_seen_wall)).total_seconds()
    span = f"确认前 {CLIP_BEFORE_S:g} 秒至确认后 {CLIP_AFTER_S:g} 秒"
    if seen_before_s <= CLIP_BEFORE_S:
        return f"{span}，含首次发现"
    return f"{span}；首次发现在确认前 {seen_before_s:.0f} 秒，不在片段内"
