"""Case queue on Redis Streams: the deployment where workers and reviewers run on several boxes.

Keys, all named after ``stream_key`` (default ``patrol:cases``):

``<stream_key>``
    the stream: one entry per case, fields ``case_id`` and ``record`` (``CaseRecord.to_dict()`` as
    JSON, sorted keys, UTF-8); consumer groups (``review`` by default) read it.
``<stream_key>:ids``
    hash ``case_id`` → stream entry id: what makes publish idempotent, and :meth:`count`.
``<stream_key>:records``
    hash ``case_id`` → record JSON, so :meth:`get` still answers after :meth:`trim`.
``<stream_key>:note-ids`` and ``<stream_key>:notes:<case_id>``
    hash ``note_id`` → ``case_id`` (idempotency of notes) and a list of note JSON per case.

Durability is the server's: run Redis with ``appendonly yes`` and ``appendfsync always`` so an
acknowledged publish or hand-out survives a crash (``everysec`` risks the last second of them).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.queue.base import (
    DEFAULT_VISIBILITY_TIMEOUT_S,
    REVIEW_GROUP,
    CaseQueue,
    Delivery,
    UnreadableDelivery,
    read_delivery,
)
from pipeline.types import BackendUnavailable, CaseNote, CaseRecord

log = logging.getLogger(__name__)

DEFAULT_STREAM_KEY = "patrol:cases"

_T = TypeVar("_T")
_ENTRY_ID = re.compile(r"^(\d+)-(\d+)$")

# The index check and the XADD must be one step: two workers retrying the same case at the same
# moment would otherwise both find it absent and both append it.
_PUBLISH_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
local id = redis.call('XADD', KEYS[1], '*', 'case_id', ARGV[1], 'record', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# -1: no such case (a note never outruns its case), 0: note seen before, 1: added.
_ADD_NOTE_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
"""


class RedisCaseQueue(CaseQueue):
    """:class:`CaseQueue` on a Redis stream with one consumer group; safe to share between threads.

    Opening is lazy: the constructor never touches the network, so a worker can start (and spool
    locally) while Redis is down. The consumer group is created (``XGROUP CREATE ... 0 MKSTREAM``)
    on the first call that needs it, and again if it vanished (a flushed or rebuilt server).

    Every method raises :class:`~pipeline.types.BackendUnavailable` when Redis cannot be reached,
    refuses the credentials, is still loading its data or does not answer within
    ``socket_timeout_s``; its message names ``host:port`` and the operation, never the password.
    The same object works again once Redis is back: nothing needs reopening.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str = REVIEW_GROUP,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        stream_key: str = DEFAULT_STREAM_KEY,
        socket_connect_timeout_s: float = 3.0,
        socket_timeout_s: float = 10.0,
        health_check_interval_s: int = 15,
    ) -> None:
        if visibility_timeout_s < 0:
            raise ValueError(f"visibility_timeout_s must be >= 0, not {visibility_timeout_s}")
        self._password = _password_in(url)
        try:
            self._redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=socket_connect_timeout_s,
                socket_timeout=socket_timeout_s,
                health_check_interval=health_check_interval_s,
                # One immediate retry on a connection error re-dials a pooled socket that died with
                # a restarted server; no backoff and no retry on timeouts, so an outage is reported
                # at once and the caller (the spool) owns the retry policy.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise ValueError(f"unusable Redis case queue URL: {self._scrub(str(exc))}") from None
        kwargs = self._redis.connection_pool.connection_kwargs
        host = str(kwargs.get("host", "localhost"))
        self._where = f"{f'[{host}]' if ':' in host else host}:{kwargs.get('port', 6379)}"
        self._group = group
        self._visibility_ms = int(visibility_timeout_s * 1000)
        # A blocking read must return before the socket timeout fires, and often enough to take
        # over deliveries that time out while it waits.
        self._block_chunk_s = min(socket_timeout_s / 2, max(visibility_timeout_s, 0.1))
        self._stream = stream_key
        self._ids = f"{stream_key}:ids"
        self._records = f"{stream_key}:records"
        self._note_ids = f"{stream_key}:note-ids"
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._add_note_script = self._redis.register_script(_ADD_NOTE_LUA)
        self._group_ready = False
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisCaseQueue({self._where}, stream={self._stream!r}, group={self._group!r})"

    def publish(self, record: CaseRecord) -> bool:
        body = json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._unavailable_as("publish"):
            # The group first: a trim() before any reader existed must not drop unread cases.
            # A reply lost with a dropped connection makes the retry answer 0: the case is stored
            # either way, which is all a publisher (the spool) needs to know.
            self._ensure_group()
            added = self._publish_script(keys=[self._stream, self._ids, self._records], args=[record.case_id, body])
        return added == 1

    def consume(self, consumer: str, count: int = 10, block_s: float = 0) -> list[Delivery | UnreadableDelivery]:
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        deadline = time.monotonic() + max(block_s, 0)
        with self._unavailable_as("consume"):
            while True:
                deliveries = self._with_group(lambda: self._take(consumer, count, deadline))
                if deliveries or time.monotonic() >= deadline:
                    return deliveries

    def ack(self, delivery_id: str) -> None:
        _parse_entry_id(delivery_id)
        with self._unavailable_as("ack"):
            # A missing group or stream acknowledges nothing, like acknowledging twice.
            self._redis.xack(self._stream, self._group, delivery_id)

    def get(self, case_id: str) -> CaseRecord | None:
        with self._unavailable_as("get"):
            body = self._redis.hget(self._records, case_id)
        return None if body is None else CaseRecord.from_json(body)

    def add_note(self, note: CaseNote) -> bool:
        body = json.dumps(note.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._unavailable_as("add_note"):
            added = self._add_note_script(
                keys=[self._ids, self._note_ids, self._notes_key(note.case_id)],
                args=[note.case_id, note.note_id, body],
            )
        if added == -1:
            raise KeyError(f"no case {note.case_id!r} to add note {note.note_id!r} to")
        return added == 1

    def notes(self, case_id: str) -> list[CaseNote]:
        with self._unavailable_as("notes"):
            bodies = self._redis.lrange(self._notes_key(case_id), 0, -1)
        return [CaseNote.from_dict(json.loads(body)) for body in bodies]

    def count(self) -> int:
        with self._unavailable_as("count"):
            return int(self._redis.hlen(self._ids))

    def pending_count(self) -> int:
        with self._unavailable_as("pending_count"):
            summary = self._with_group(lambda: self._redis.xpending(self._stream, self._group))
        return int(summary["pending"])

    def trim(self, older_than_s: float) -> int:
        """Remove stream entries older than ``older_than_s``; the number removed. Redis only.

        Keeps every entry some group still needs: never the oldest entry pending in any group, nor
        anything after it, nor anything a group has not read yet. :meth:`get`, :meth:`count` and
        the notes are untouched, so a trimmed case stays readable. The bound is computed before
        ``XTRIM`` runs, which is safe: meanwhile groups can only move forward.
        """
        if older_than_s < 0:
            raise ValueError(f"older_than_s must be >= 0, not {older_than_s}")
        with self._unavailable_as("trim"):
            # The own group first, so entries it has yet to read count as unread; asked afresh
            # (trim is rare), since a flushed server would otherwise fail XINFO with "no such key".
            self._group_ready = False
            self._ensure_group()
            with self._redis.pipeline(transaction=False) as pipe:
                # The server's clock, because it is the one that stamped the entry ids.
                pipe.time()
                pipe.xinfo_groups(self._stream)
                (seconds, micros), groups = pipe.execute()
            keep_from = (int(seconds) * 1000 + int(micros) // 1000 - int(older_than_s * 1000), 0)
            with self._redis.pipeline(transaction=False) as pipe:
                for group in groups:
                    pipe.xpending(self._stream, group["name"])
                summaries = pipe.execute()
            for group, summary in zip(groups, summaries, strict=True):
                ms, seq = _parse_entry_id(group["last-delivered-id"])
                keep_from = min(keep_from, (ms, seq + 1))
                if summary["pending"]:
                    keep_from = min(keep_from, _parse_entry_id(summary["min"]))
            if keep_from <= (0, 0):
                return 0
            removed = self._redis.xtrim(self._stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False)
        return int(removed)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._redis.close()

    def _take(self, consumer: str, count: int, deadline: float) -> list[Delivery | UnreadableDelivery]:
        """One pass: take over timed-out deliveries, then read new entries, blocking only if none."""
        claimed = self._reclaim(consumer, count)
        wanted = count - len(claimed)
        remaining_s = deadline - time.monotonic()
        block_ms = None
        if not claimed and remaining_s > 0:
            # Rounded up and at least 1: BLOCK 0 would wait forever.
            block_ms = max(1, int(min(remaining_s, self._block_chunk_s) * 1000 + 0.999))
        # The delivery counters and the read of new entries share one round trip.
        with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in claimed:
                pipe.xpending_range(self._stream, self._group, min=entry_id, max=entry_id, count=1)
            if wanted:
                pipe.xreadgroup(self._group, consumer, {self._stream: ">"}, count=wanted, block=block_ms)
            replies = pipe.execute()
        deliveries = []
        for (entry_id, fields), pending in zip(claimed, replies, strict=False):
            if not pending:
                continue  # acknowledged by its previous holder between the claim and now
            deliveries.append(_delivery(entry_id, fields, int(pending[0]["times_delivered"])))
        if wanted:
            for _stream, entries in replies[-1] or []:
                deliveries.extend(_delivery(entry_id, fields, 1) for entry_id, fields in entries)
        return deliveries

    def _reclaim(self, consumer: str, count: int) -> list[tuple[str, dict[str, str]]]:
        claimed: list[tuple[str, dict[str, str]]] = []
        cursor = "0-0"
        while len(claimed) < count:
            # XAUTOCLAIM scans a bounded slice of the pending list per call; the cursor goes on.
            reply = self._redis.xautoclaim(
                self._stream, self._group, consumer, self._visibility_ms, cursor, count=count - len(claimed)
            )
            cursor, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []  # Redis >= 7: pending ids whose entry is gone
            if deleted:
                log.warning(
                    "case queue %s: %d pending deliveries of group %r lost their stream entries "
                    "(deleted outside trim()) and were dropped: %s",
                    self._where, len(deleted), self._group, ", ".join(deleted[:10]),
                )
            # Redis 6.2 still lists deleted entries, with no fields.
            claimed.extend((entry_id, fields) for entry_id, fields in entries if fields)
            if cursor == "0-0":
                break
        return claimed

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _with_group(self, call: Callable[[], _T]) -> _T:
        self._ensure_group()
        try:
            return call()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        log.warning("case queue %s: consumer group %r was gone; created it again", self._where, self._group)
        self._group_ready = False
        self._ensure_group()
        return call()

    def _notes_key(self, case_id: str) -> str:
        return f"{self._stream}:notes:{case_id}"

    @contextmanager
    def _unavailable_as(self, operation: str) -> Iterator[None]:
        if self._closed:
            raise ValueError(f"{operation} on a closed case queue ({self._where})")
        try:
            yield
        # BusyLoadingError (still reading its AOF) and AuthenticationError are ConnectionErrors.
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise BackendUnavailable(f"Redis case queue at {self._where} unavailable during {operation}: {detail}") from exc

    def _scrub(self, text: str) -> str:
        if self._password:
            for form in {self._password, unquote(self._password)}:
                text = text.replace(form, "***")
        return text


def _delivery(entry_id: str, fields: dict[str, Any], attempts: int) -> Delivery | UnreadableDelivery:
    # An entry added past publish() may lack either field: that is for the reader to refuse, not to raise.
    return read_delivery(entry_id, fields.get("case_id", entry_id), fields.get("record", ""), attempts)


def _parse_entry_id(entry_id: str) -> tuple[int, int]:
    match = _ENTRY_ID.match(entry_id)
    if match is None:
        raise ValueError(f"{entry_id!r} is not a delivery id of a Redis case queue")
    return int(match[1]), int(match[2])


def _password_in(url: str) -> str | None:
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None
