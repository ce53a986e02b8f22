"""重复: the cases a case may repeat, for the officer to choose from instead of typing a case id.

A candidate is a case of the same kind confirmed within the window either side of the case (the
setting ``duplicate_window_h``, 6 hours by default), at the same camera and zone or with the same
plate (as each case shows it: an officer's correction over the machine's read). Cases marked as
duplicates themselves are left out: a duplicate points at the original (cases.py refuses chains).

Most likely first: the same plate at the same place, then the same plate elsewhere, then the same
place where either case has no plate, then the same place with another plate (another car, most
likely); within each, the nearest in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.review.cases import CaseRepository, ReviewCase
from pipeline.review.plates import CURRENT_PLATE_TEXT
from pipeline.review.vocabulary import Status

MAX_CANDIDATES = 10
_LOOKED_AT = 200  # the nearest in time of the matching cases, ranked here


@dataclass(frozen=True, slots=True)
class DuplicateCandidate:
    case: ReviewCase
    same_place: bool  # same camera and zone
    same_plate: bool
    other_plate: bool  # both cases have a plate, and they differ
    seconds_apart: float  # confirmed this long before (negative) or after the case

    @property
    def rank(self) -> int:
        """0 for the likeliest kind of match, 3 for the least likely."""
        if self.same_plate:
            return 0 if self.same_place else 1
        return 3 if self.other_plate else 2

    @property
    def reasons(self) -> list[str]:
        """Why it is suggested, in Chinese."""
        said = (("同一摄像头与管控区", self.same_place), ("同一车牌", self.same_plate), ("车牌不同", self.other_plate))
        return [words for words, holds in said if holds]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def duplicate_candidates(cases: CaseRepository, case: ReviewCase, window_h: float,
                         limit: int = MAX_CANDIDATES) -> list[DuplicateCandidate]:
    record = case.record
    moment = _epoch(record.confirmed_wall)
    plate = case.plate.text if case.plate else None
    matches = "(camera_id = ? AND zone_id = ?)" + (f" OR {CURRENT_PLATE_TEXT} = ?" if plate else "")
    condition = f"case_id != ? AND status != ? AND violation = ? AND confirmed_at BETWEEN ? AND ? AND ({matches})"
    values: list = [case.case_id, Status.DUPLICATE.value, record.violation, moment - window_h * 3600,
                    moment + window_h * 3600, record.camera_id, record.zone_id, *([plate] if plate else []), moment]
    found = []
    for other in cases.matching(condition, values, order_by="ABS(confirmed_at - ?), case_id", limit=_LOOKED_AT):
        other_plate = other.plate.text if other.plate else None
        found.append(DuplicateCandidate(
            other, same_place=(other.record.camera_id, other.record.zone_id) == (record.camera_id, record.zone_id),
            same_plate=plate is not None and other_plate == plate,
            other_plate=None not in (plate, other_plate) and other_plate != plate,
            seconds_apart=_epoch(other.record.confirmed_wall) - moment))
    found.sort(key=lambda candidate: (candidate.rank, abs(candidate.seconds_apart)))
    return found[:limit]
