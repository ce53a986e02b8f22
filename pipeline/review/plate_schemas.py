"""The API's bodies for a case's plate (plates.py): as the case shows it, and an officer's correction."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipeline.review.cases import ReviewCase
from pipeline.review.plates import REASON_MAX, CasePlate, read_colour
from pipeline.review.vocabulary import PLATE_COLOUR_LABELS, PlateColour


class PlateReadOut(BaseModel):
    """识别结果: the plate as the patrol's OCR read it, kept as filed."""

    text: str
    confidence: float | None
    colour: PlateColour
    colour_label: str


class PlateCorrectionOut(BaseModel):
    """人工更正: the officer's correction in force."""

    by: str = Field(description="The login name of the officer who corrected it.")
    by_name: str = Field(description="Their 姓名, or the login name of an account without one.")
    at: str = Field(description="ISO 8601 UTC")
    reason: str | None
    audit_seq: int = Field(description="The correction's entry in the audit chain.")


class PlateOut(BaseModel):
    text: str = Field(description="The plate as the case stands (the correction in force, else the read), "
                                  "without separators, e.g. 鲁A12345")
    display: str = Field(description="As the plate shows it, e.g. 鲁A·12345")
    colour: PlateColour
    colour_label: str = Field(description="e.g. 蓝牌, 绿牌（新能源）")
    corrected: bool = Field(description="true: an officer corrected the machine's read (or added a plate)")
    read: PlateReadOut | None = Field(description="识别结果; null when the OCR read none and an officer added one")
    correction: PlateCorrectionOut | None = Field(description="人工更正; null: the plate is the machine's read")

    @classmethod
    def of(cls, case: ReviewCase) -> PlateOut | None:
        plate: CasePlate | None = case.plate
        if plate is None:
            return None
        read, correction = plate.read, plate.correction
        colour = read_colour(read)
        return cls(
            text=plate.text, display=plate.display, colour=plate.colour, colour_label=plate.colour_label,
            corrected=correction is not None,
            read=PlateReadOut(text=read["text"], confidence=read.get("confidence"), colour=colour,
                              colour_label=PLATE_COLOUR_LABELS[colour]) if read and read.get("text") else None,
            correction=PlateCorrectionOut(by=correction.by, by_name=correction.by_name, at=correction.at,
                                          reason=correction.reason, audit_seq=correction.audit_seq)
            if correction else None)


class PlateCorrectionIn(BaseModel):
    text: str = Field(min_length=1, max_length=32, description="The plate, e.g. 鲁A12345 or 鲁A·D12345; refused (400, "
                      "code plate_format) unless it is a Chinese plate: province, office letter, 5 or 6 letters "
                      "or digits")
    colour: PlateColour | None = Field(None, description="The plate's colour; null: the one the case shows now")
    reason: str = Field("", max_length=REASON_MAX, description="Why, e.g. 识别将 8 误读为 B (optional)")
