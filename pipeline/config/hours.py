"""Daily local-time windows such as ``06:00-22:00``; a window may wrap midnight."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

MINUTES_PER_DAY = 24 * 60
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``[start, end)`` in minutes after local midnight; ``end <= start`` means it wraps midnight."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, value: object) -> TimeWindow:
        if isinstance(value, TimeWindow):
            return value
        match = _WINDOW.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a window 'HH:MM-HH:MM' (quoted in YAML), got {value!r}")
        start_h, start_m, end_h, end_m = map(int, match.groups())
        start, end = _minutes(start_h, start_m), _minutes(end_h, end_m)
        if start == MINUTES_PER_DAY:
            raise ValueError(f"{value!r}: a window cannot start at 24:00, write 00:00")
        if start == end:
            raise ValueError(f"{value!r}: start equals end; leave `hours` empty to enforce all day")
        return cls(start, end)

    def contains(self, local: time) -> bool:
        minute = local.hour * 60 + local.minute + local.second / 60
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    def __str__(self) -> str:
        return f"{_clock(self.start_min)}-{_clock(self.end_min)}"


def _minutes(hour: int, minute: int) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and minute > 0):
        raise ValueError(f"{hour:02d}:{minute:02d} is not a time of day (00:00 to 24:00)")
    return hour * 60 + minute


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


HoursWindow = Annotated[
    TimeWindow,
    PlainValidator(TimeWindow.parse),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": _WINDOW.pattern, "examples": ["06:00-22:00", "22:00-06:00"]}
    ),
]
