"""HTTP byte ranges (RFC 9110 §14): the single ``Range: bytes=…`` a browser sends to scrub a clip."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(ValueError):
    """The range starts at or past the file's end (or asks for the last 0 bytes): answered 416."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int  # inclusive, as HTTP counts
    size: int  # of the whole file

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


def requested_range(header: str, size: int) -> ByteRange | None:
    """The one range ``header`` asks of a ``size``-byte file, its end cut to the file's; RangeNotSatisfiable
    when none of it lies in the file.

    None (send the whole file, as RFC 9110 lets a server do) for a header this does not read: several
    ranges, another unit, a malformed one, or a last byte before the first.
    """
    match = _ONE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    try:
        first = int(first_text) if first_text else None
        last = int(last_text) if last_text else None
    except ValueError:  # more digits than Python converts: no file here is that large anyway
        return None
    if first is None:
        if last is None:
            return None
        if last == 0 or size == 0:
            raise RangeNotSatisfiable(f"the last {last} bytes of a {size}-byte file")
        return ByteRange(max(0, size - last), size - 1, size)  # bytes=-N: the last N bytes
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(f"byte {first} of a {size}-byte file")
    return ByteRange(first, size - 1 if last is None else min(last, size - 1), size)
