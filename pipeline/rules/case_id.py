"""Case ids: deterministic, so replaying the same stream files the same ids."""

from __future__ import annotations

import hashlib

from pipeline.vocabulary import ViolationKind


def case_id(
    case_namespace: str,
    camera_id: str,
    zone_id: str,
    kind: str,
    first_seen_s: float,
    ordinal: int = 0,
) -> str:
    """The kind's letter (``P-``, ``S-``, ``G-``, ``B-``) and 16 hex digits of a sha1 over what
    identifies an episode.

    ``ordinal`` tells apart episodes of one zone and kind whose dwell started on the same frame
    (all cars already parked when a stream starts), numbered in detection order.
    """
    first_seen_ms = round(first_seen_s * 1000)
    key = "\x1f".join([case_namespace, camera_id, zone_id, kind, str(first_seen_ms), str(ordinal)])
    return f"{ViolationKind(kind).letter}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"
