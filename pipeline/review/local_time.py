"""Times on the district's clock (ReviewSettings.display_timezone): read from officers, shown to them."""

from __future__ import annotations

from datetime import datetime, tzinfo

DEFAULT_DISPLAY_TIMEZONE = "Asia/Shanghai"  # the district the service was built for (UTC+8, no summer time)


def read_local(moment: datetime, zone: tzinfo) -> datetime:
    """``moment`` as an officer means it: on ``zone``'s clock when it has no offset.

    OverflowError or ValueError for a time with no Unix time, which the case list filters on.
    """
    aware = moment if moment.tzinfo else moment.replace(tzinfo=zone)
    aware.timestamp()
    return aware


def show_local(iso: str | None, zone: tzinfo) -> str:
    """``2026-11-25 08:53:43`` on ``zone``'s clock, from any ISO 8601 time with an offset."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def show_clock(moment: datetime, zone: tzinfo) -> str:
    """``14:32`` on ``zone``'s clock: how long a claim lasts, when a case last changed."""
    return moment.astimezone(zone).strftime("%H:%M")
