"""The 数字城管 event code table, kept in one YAML file a district can override.

Its entries are named: a case is filed under the entry of its rule type, or under the one its
zone's rule chose (``event:`` in the camera file), so one rule type can file different 小类.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_EVENT_CODES_PATH = Path(__file__).with_name("event_codes.yaml")
_FIELDS = ("code", "name", "category")


class EventCodeError(ValueError):
    """The event code table is malformed or lacks an entry; the message names the file."""


@dataclass(frozen=True, slots=True)
class EventCode:
    code: str  # 大类 + 小类, e.g. "0505"
    name: str  # 小类 name, e.g. 机动车乱停放
    category: str  # 大类 name, e.g. 街面秩序


@dataclass(frozen=True, slots=True)
class EventCodeTable:
    source: Path
    codes: Mapping[str, EventCode]

    def lookup(self, entry: str) -> EventCode:
        """The code of ``entry``: a rule type, or the entry a zone chose instead."""
        try:
            return self.codes[entry]
        except KeyError:
            raise EventCodeError(
                f"{entry!r} has no entry in the event code table {self.source}"
                f" (it has: {', '.join(sorted(self.codes))})"
            ) from None


def load_event_codes(path: str | Path | None = None) -> EventCodeTable:
    """Read the table at ``path``, or the packaged default when ``None``."""
    source = Path(path) if path is not None else DEFAULT_EVENT_CODES_PATH
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, dict):
        raise EventCodeError(f"{source}: expected a top-level 'events:' mapping of entries")
    codes = {key: _parse_entry(source, key, entry) for key, entry in events.items()}
    return EventCodeTable(source=source, codes=codes)


def _parse_entry(source: Path, key: str, entry: Any) -> EventCode:
    if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
        raise EventCodeError(f"{source}: {key} must have exactly {', '.join(_FIELDS)}")
    for field in _FIELDS:
        if not isinstance(entry[field], str) or not entry[field]:
            # The usual cause is an unquoted code: YAML turns 0505 into a number.
            raise EventCodeError(
                f"{source}: {key}.{field} must be a quoted, non-empty string"
            )
    return EventCode(**entry)
