"""车牌: the plate as a case stands, and an officer's correction of it (人工更正).

The machine's read (the OCR's text, confidence and background colour) is in the case's record, which
the audit chain sealed when the case arrived, so it is never changed: a correction is a row of
``plate_corrections`` beside it, written with its audit entry (who, the plate before and after, the
machine's read, the reason) in one transaction. The latest correction is the plate the case shows,
prints, is searched by and is matched on for duplicates; the read stays on show as 识别结果.

``patrol verify`` holds the correction in force to the latest ``plate_correct`` entry (verify.py).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from pipeline.evidence.plate import normalise
from pipeline.review.accounts import User, find_account
from pipeline.review.claims import CLAIM_COLUMNS, CaseClaimed, claim_from_columns
from pipeline.review.db import ReviewDatabase
from pipeline.review.errors import Conflict, Invalid, NoSuchCase, NotAllowed
from pipeline.review.vocabulary import PLATE_COLOUR_LABELS, AccountRole, PlateColour, Status, violation_label
from pipeline.vocabulary import ViolationKind

CORRECT_ACTION = "plate_correct"
PLATE_FORMAT_HINT = "省份简称＋发牌机关字母＋5 位字母或数字（新能源车 6 位），如 鲁A12345、鲁AD12345"
REASON_MAX = 500
# The correction in force of a case, as one JSON value in a query on ``cases`` (NULL: none).
PLATE_CORRECTION_COLUMN = (
    "(SELECT json_object('text', pc.text, 'colour', pc.colour, 'by', pc.corrected_by, 'by_name',"
    " (SELECT display_name FROM users WHERE users.name = pc.corrected_by), 'at', pc.corrected_at,"
    " 'reason', pc.reason, 'audit_seq', pc.audit_seq)"
    " FROM plate_corrections pc WHERE pc.case_id = cases.case_id ORDER BY pc.seq DESC LIMIT 1)")
# The plate text a case shows, in a query on ``cases``: the correction in force, else the machine's read.
CURRENT_PLATE_TEXT = ("COALESCE((SELECT pc.text FROM plate_corrections pc WHERE pc.case_id = cases.case_id"
                      " ORDER BY pc.seq DESC LIMIT 1), json_extract(cases.record, '$.plate.text'))")


class BadPlate(Invalid):
    """Text that is no Chinese plate."""

    code = "plate_format"

    def __init__(self, text: str) -> None:
        super().__init__(f"车牌号码“{text}”格式不正确：应为{PLATE_FORMAT_HINT}")


@dataclass(frozen=True, slots=True)
class PlateCorrection:
    text: str
    colour: PlateColour
    by: str  # login name
    by_name: str  # 姓名 as the account has it now, else the login name
    at: str  # ISO 8601 UTC
    reason: str | None
    audit_seq: int


@dataclass(frozen=True, slots=True)
class CasePlate:
    """The plate a case shows: the correction in force over the machine's read, both kept."""

    text: str  # without separators, e.g. 鲁A12345
    colour: PlateColour
    read: dict[str, Any] | None  # the record's plate as the OCR read it: text, confidence, colour, ...
    correction: PlateCorrection | None

    @property
    def display(self) -> str:
        """As the plate itself shows it: 鲁A·12345."""
        return f"{self.text[:2]}·{self.text[2:]}"

    @property
    def colour_label(self) -> str:
        return PLATE_COLOUR_LABELS[self.colour]

    def audit_state(self) -> dict[str, str]:
        return {"plate": self.text, "plate_colour": self.colour.value}


def read_colour(read: dict[str, Any] | None) -> PlateColour:
    value = (read or {}).get("colour")
    return PlateColour(value) if value in PlateColour._value2member_map_ else PlateColour.UNKNOWN


def case_plate(read: dict[str, Any] | None, correction: PlateCorrection | None) -> CasePlate | None:
    """The plate of a case whose record holds ``read`` (None: none read) under ``correction``; None: no plate."""
    if correction is not None:
        return CasePlate(correction.text, correction.colour, read, correction)
    if read and read.get("text"):
        return CasePlate(str(read["text"]), read_colour(read), read, None)
    return None


def plate_correctable(status: Status, violation: str, plate: CasePlate | None) -> bool:
    """Whether a case's page offers 更正车牌: a plate to correct, or a kind of case that has one, and not closed
    (who may, and when someone else holds the case, is PlateRepository.correct's to say)."""
    return status is not Status.CLOSED and (plate is not None or _has_plates(violation))


def correction_from_json(text: str | None) -> PlateCorrection | None:
    """The correction PLATE_CORRECTION_COLUMN holds; None for none."""
    if text is None:
        return None
    fields = json.loads(text)
    return PlateCorrection(text=fields["text"], colour=PlateColour(fields["colour"]), by=fields["by"],
                           by_name=fields["by_name"] or fields["by"], at=fields["at"], reason=fields["reason"],
                           audit_seq=fields["audit_seq"])


def checked_plate(text: str) -> str:
    """``text`` as a plate without separators (upper case; O and I after the office letter read as 0 and 1);
    BadPlate when it is no Chinese plate."""
    plate = normalise(text.strip())
    if plate is None:
        raise BadPlate(text.strip())
    return plate


class PlateRepository:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def correct(self, case_id: str, user: User, text: str, *, colour: PlateColour | None = None,
                reason: str = "") -> None:
        """The case's plate is ``text`` from now on (``colour``: the one it shows now, if not given), with an
        audit entry; the machine's read stays in the record. BadPlate for text that is no Chinese plate."""
        plate, reason = checked_plate(text), reason.strip()
        with self._db.change(user.name, CORRECT_ACTION, case_id) as change:
            conn = change.conn
            current, read, violation = _open_to_correction(conn, case_id, user)
            colour = colour or (current.colour if current else PlateColour.UNKNOWN)
            if current is not None and (current.text, current.colour) == (plate, colour):
                raise Invalid(f"车牌已是 {current.display}（{current.colour_label}），无需更正")
            if current is None and not _has_plates(violation):
                raise Invalid(f"{violation_label(violation)}案件没有车牌，无需更正")
            corrector = find_account(conn, user.name) or user
            after = CasePlate(plate, colour, read, None)
            entry = change.record(
                before=current.audit_state() if current else {"plate": None, "plate_colour": None},
                after=after.audit_state(),
                detail={"read": {key: read.get(key) for key in ("text", "confidence", "colour")} if read else None,
                        "reason": reason or None, **corrector.identity()})
            conn.execute("INSERT INTO plate_corrections (case_id, text, colour, corrected_by, corrected_at, reason,"
                         " audit_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (case_id, plate, colour.value, user.name, entry.at, reason or None, entry.seq))
            # The case is found by its corrected plate from now on, and by its read still.
            conn.execute("UPDATE cases SET search_text = search_text || ' ' || ? WHERE case_id = ?",
                         (plate.lower(), case_id))


def _open_to_correction(conn: sqlite3.Connection, case_id: str,
                        user: User) -> tuple[CasePlate | None, dict[str, Any] | None, str]:
    """The case's plate now, its machine read and its violation, provided ``user`` may correct it now: not
    a closed case, nor a new one another officer is assigned or someone else holds."""
    row = conn.execute(f"SELECT status, assignee, violation, json_extract(record, '$.plate'), {CLAIM_COLUMNS},"
                       f" {PLATE_CORRECTION_COLUMN} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    if row is None:
        raise NoSuchCase(case_id)
    status, assignee, violation, read, *claim, correction = row
    status = Status(status)
    if status is Status.CLOSED:
        raise Conflict(f"案件 {case_id} 已结案，不能更正车牌")
    if status is Status.NEW:
        if user.role is AccountRole.OFFICER and assignee not in (None, user.name):
            account = find_account(conn, assignee)
            raise NotAllowed(f"案件 {case_id} 已分派给 {account.label if account else assignee}，不能更正车牌")
        held = claim_from_columns(*claim)
        if held is not None and held.holder != user.name:
            raise CaseClaimed(held, "请等其处理或释放认领后再更正车牌")
    read = json.loads(read) if read else None
    return case_plate(read, correction_from_json(correction)), read, violation


def _has_plates(violation: str) -> bool:
    """A kind of case whose object carries a plate (a parked car), so one may be added where none was read."""
    kind = ViolationKind._value2member_map_.get(violation)
    return bool(kind and kind.reads_plate)
