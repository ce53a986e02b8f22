"""Decisions reach the city platform: the review store's outbox of status changes, and the sender
behind ``patrol forward --from-review DB``.

Each change of a case the platform needs to hear of is written to the ``outbox`` table in the very
transaction of the change and its audit entry, so none is lost or invented: 已确认 (confirmed), 已立案
(filed), 已派遣 (dispatched, again on 超期改派 and after 核查退回), 已处置 (disposed) and 已结案 (closed).
A rejected case is never sent as a violation; one rejected (or marked a duplicate) after it was sent
is sent as ``withdrawn`` instead.

``patrol forward --from-review DB --to URL`` POSTs them oldest first, at least once, with the retry
rules of ``pipeline.queue.forward``; the ``Idempotency-Key`` header is the body's ``idempotency_key``,
``<case id>/<audit seq of the change>``, so a change sent twice is one change to the platform. A
refused change holds back its own case's later changes, never other cases'. The body (UTF-8 JSON,
sorted keys, the same bytes on every try):

    {
      "idempotency_key": "P-9eaba0802ce114d7/42",
      "case_id": "P-9eaba0802ce114d7",
      "status": "dispatched",          # confirmed | filed | dispatched | disposed | closed | withdrawn
      "previous_status": "filed",
      "at": "2026-12-07T02:15:04.120+00:00",   # the audit entry's time (UTC)
      "actor": "chief",                # the review account that made the change
      "audit": {"seq": 42, "sha256": "…"},      # the entry in the hash chain, for `patrol verify`
      "violation": "illegal_parking",
      "event_code": "0505",
      "case_number": "双山-20261207-0001",      # null before 立案
      "unit": {"id": "traffic-police", "name": "章丘交警大队双山中队"},  # null before 派遣
      "deadline": "2026-12-07T04:15:04.120+00:00",  # null before 派遣
      "note": "…",                     # the officer's note on the change, or null
      "record": {…},                   # confirmed only: the case as filed (CaseRecord.to_dict())
      "photos": [{"name": "disposal-1-1.jpg", "sha256": "…", "content_type": "image/jpeg", "size": 123}],
                                       # disposed only: the field photos of this report of disposal
      "reason": "detector_error",      # withdrawn only: the reject reason, or "duplicate"
      "duplicate_of": null             # withdrawn only
    }
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.queue.forward import Endpoint, Outcome, RetryPolicy, Tally, post_until_settled
from pipeline.review.audit import AuditEntry, canonical_json, now_iso
from pipeline.review.vocabulary import Status

if TYPE_CHECKING:  # cases.py writes to the outbox
    from pipeline.review.cases import ReviewCase
    from pipeline.review.db import ReviewDatabase

log = logging.getLogger(__name__)

FORWARDED = frozenset({Status.CONFIRMED, Status.FILED, Status.DISPATCHED, Status.DISPOSED, Status.CLOSED})
WITHDRAWING = frozenset({Status.REJECTED, Status.DUPLICATE})
WITHDRAWN = "withdrawn"
UNSENT_PER_READ = 500


def note_status_change(conn: sqlite3.Connection, before: ReviewCase, after: ReviewCase, entry: AuditEntry) -> None:
    """Put the change ``entry`` recorded into the outbox, in its transaction, if the platform is to hear of it."""
    if after.status in FORWARDED and _as_the_platform_sees(before) != _as_the_platform_sees(after):
        status = after.status.value
    elif after.status in WITHDRAWING and _last_status_queued(conn, after.case_id) not in (None, WITHDRAWN):
        status = WITHDRAWN
    else:
        return
    key = f"{after.case_id}/{entry.seq}"
    conn.execute("INSERT INTO outbox (idempotency_key, case_id, status, body) VALUES (?, ?, ?, ?)",
                 (key, after.case_id, status, canonical_json(_body(key, status, before, after, entry)).decode()))


def _as_the_platform_sees(case: ReviewCase) -> dict[str, Any]:
    # Who works a case in the office is no news to the platform, nor is a camera recheck, which changes no status.
    return {**case.review_state(), "assignee": None, "rechecks": None}


def _last_status_queued(conn: sqlite3.Connection, case_id: str) -> str | None:
    row = conn.execute("SELECT status FROM outbox WHERE case_id = ? ORDER BY seq DESC LIMIT 1", (case_id,)).fetchone()
    return None if row is None else row[0]


def _body(key: str, status: str, before: ReviewCase, after: ReviewCase, entry: AuditEntry) -> dict[str, Any]:
    record, loop = after.record, after.loop
    body: dict[str, Any] = {
        "idempotency_key": key, "case_id": after.case_id, "status": status, "previous_status": before.status.value,
        "at": entry.at, "actor": entry.actor, "audit": {"seq": entry.seq, "sha256": entry.sha256},
        "violation": record.violation, "event_code": record.event_code,
        "case_number": loop.case_number if loop else None,
        "unit": {"id": loop.unit, "name": loop.unit_name} if loop and loop.unit else None,
        "deadline": loop.deadline if loop else None,
        "note": after.decision_note if status in (Status.CONFIRMED, WITHDRAWN) else entry.detail.get("note") or None,
    }
    if status == Status.CONFIRMED:
        body["record"] = record.to_dict()
    elif status == Status.DISPOSED and loop:
        body["photos"] = [{"name": photo.name, "sha256": photo.sha256, "content_type": photo.content_type,
                           "size": photo.size} for photo in loop.latest_photos]
    elif status == WITHDRAWN:
        body["reason"] = after.reject_reason.value if after.reject_reason else after.status.value
        body["duplicate_of"] = after.duplicate_of
    return body


@dataclass(frozen=True, slots=True)
class StatusChange:
    seq: int
    idempotency_key: str
    case_id: str
    status: str
    body: dict[str, Any]


class Outbox:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def unsent(self) -> list[StatusChange]:
        """The oldest changes the platform has not taken yet, oldest first."""
        with self._db.reading() as conn:
            rows = conn.execute("SELECT seq, idempotency_key, case_id, status, body FROM outbox WHERE sent_at IS NULL"
                                " ORDER BY seq LIMIT ?", (UNSENT_PER_READ,)).fetchall()
        return [StatusChange(seq, key, case_id, status, json.loads(body)) for seq, key, case_id, status, body in rows]

    def mark_sent(self, change: StatusChange) -> None:
        # Bookkeeping, not a decision: the change itself is in the audit chain already.
        with self._db.unaudited_write() as conn:
            conn.execute("UPDATE outbox SET sent_at = ? WHERE seq = ?", (now_iso(), change.seq))


class OutboxForwarder:
    """POSTs the outbox's changes to ``endpoint`` oldest first; :meth:`stop` as for ``Forwarder``.

    A refused change keeps its case's later changes back (the platform must not see them out of
    order) and is tried again after ``retry_refused_after_s``; an endpoint still unavailable after
    the retry policy ends the pass, since every later change would wait on it the same.
    """

    def __init__(self, outbox: Outbox, endpoint: Endpoint, *, retry: RetryPolicy = RetryPolicy(),
                 retry_refused_after_s: float = 300.0, print_line: Callable[[str], None] = lambda line: None) -> None:
        self._outbox = outbox
        self._endpoint = endpoint
        self._retry = retry
        self._retry_refused_after_s = retry_refused_after_s
        self._print_line = print_line
        self._stop = threading.Event()
        self._refused_at: dict[int, float] = {}  # seq → time.monotonic() of its refusal
        self.tally = Tally()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, once: bool = False, poll_s: float = 1.0) -> Tally:
        """Send until :meth:`stop`; with ``once``, one pass over what is unsent now."""
        while not self._stop.is_set():
            self._send_unsent()
            if once:
                break
            self._stop.wait(poll_s)
        return self.tally

    def _send_unsent(self) -> None:
        held_back: set[str] = set()  # cases with a refused change this pass
        for change in self._outbox.unsent():
            if self._stop.is_set():
                return
            refused_at = self._refused_at.get(change.seq)
            if change.case_id in held_back or (
                    refused_at is not None and time.monotonic() - refused_at < self._retry_refused_after_s):
                held_back.add(change.case_id)
                continue
            attempt = post_until_settled(self._endpoint, change.body, change.idempotency_key, self._retry,
                                         self._stop, f"status change {change.idempotency_key}")
            self.tally.count(attempt.outcome)
            if attempt.outcome is Outcome.FORWARDED:
                self._outbox.mark_sent(change)
                self._refused_at.pop(change.seq, None)
                self._print_line(f"[forward] {change.idempotency_key} {change.status} "
                                 f"status={attempt.reply.status} posts={attempt.posts}")
            elif attempt.outcome is Outcome.REFUSED:
                self._refused_at[change.seq] = time.monotonic()
                held_back.add(change.case_id)
                log.error("status change %s (%s) REFUSED by %s: %s; kept in the outbox with the case's later "
                          "changes, other cases go on", change.idempotency_key, change.status,
                          self._endpoint.display, attempt.why)
            else:
                log.warning("status change %s not delivered to %s after %d POST(s) (last: %s); it and the changes "
                            "after it stay in the outbox", change.idempotency_key, self._endpoint.display,
                            attempt.posts, attempt.why)
                return
