"""Claims (认领): an officer takes a new case for a while, so two officers working the queue never
decide the same case.

A claim is two columns of the case: who holds it and until when. It ends when the case is decided,
when its holder releases it, or when its time is up. Nothing runs to end it: every reader compares
the stored expiry with ``clock()``, so a claim past its time is no claim. Claiming and releasing
are audited in the hash chain, in the change's own transaction; an expiry needs no entry, since
the claim's entry already says until when it held.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.review.accounts import User, find_account
from pipeline.review.db import ReviewDatabase
from pipeline.review.errors import Conflict, NoSuchCase, NotAllowed
from pipeline.review.local_time import DEFAULT_DISPLAY_TIMEZONE, show_clock
from pipeline.review.vocabulary import STATUS_LABELS, AccountRole, Status

DEFAULT_CLAIM_S = 600.0
# What claims are read against: time.time, but a test can freeze it (monkeypatch claims.clock).
clock = time.time
# A Claim's columns in a query on ``cases``: holder, expiry, and the holder's 姓名 as the account has it now.
CLAIM_COLUMNS = "claimed_by, claim_expires_at, (SELECT display_name FROM users WHERE users.name = cases.claimed_by)"
NO_CLAIM = {"claimed_by": None, "claim_expires_at": None}  # the audit state of a case nobody holds
_HELD = "(claimed_by IS NOT NULL AND claim_expires_at > ?)"


class ClaimScope(StrEnum):
    """The list's claim filter, as seen by the officer asking."""

    MINE = "mine"
    UNCLAIMED = "unclaimed"
    OTHERS = "others"


@dataclass(frozen=True, slots=True)
class Claim:
    holder: str  # login name
    holder_name: str  # 姓名, or the login name of an account without one
    expires_at: float  # epoch seconds

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)

    def audit_state(self) -> dict[str, Any]:
        return {"claimed_by": self.holder, "claim_expires_at": self.expires.isoformat(timespec="seconds")}


def claim_from_columns(holder: str | None, expires_at: float | None, holder_name: str | None) -> Claim | None:
    """The claim that CLAIM_COLUMNS hold while it lasts; None for none, or for one past its time."""
    if holder is None or expires_at is None or expires_at <= clock():
        return None
    return Claim(holder, holder_name or holder, expires_at)


def claim_condition(scope: ClaimScope, viewer: str) -> tuple[str, list[Any]]:
    """A WHERE condition on ``cases`` for the list's claim filter, as ``viewer`` sees it now."""
    now = clock()
    if scope is ClaimScope.MINE:
        return f"{_HELD} AND claimed_by = ?", [now, viewer]
    if scope is ClaimScope.OTHERS:
        return f"{_HELD} AND claimed_by != ?", [now, viewer]
    return f"NOT {_HELD}", [now]


class CaseClaimed(Conflict):
    """Someone else holds the case: the message says who, until when, and what to do instead."""

    code = "case_claimed"

    def __init__(self, claim: Claim, advice: str = "请选择其他案件") -> None:
        self.claim, self.advice = claim, advice
        super().__init__(self.describe(ZoneInfo(DEFAULT_DISPLAY_TIMEZONE)))

    def describe(self, zone: tzinfo) -> str:
        return f"该案件已由 {self.claim.holder_name} 认领（至 {show_clock(self.claim.expires, zone)}），{self.advice}"


def refuse_unless_open_to(user: User, case_id: str, status: Status, assignee: str | None,
                          claim: Claim | None, conn: sqlite3.Connection | None = None) -> None:
    """What keeps ``user`` from working on a case now: it is decided, assigned to another officer, or
    held by someone else. Given the change's ``conn``, the refusal names the assignee by their 姓名."""
    if status is not Status.NEW:
        raise Conflict(f"案件 {case_id} 已处理（{STATUS_LABELS[status]}），如需更改请联系中队长重新打开")
    if user.role is AccountRole.OFFICER and assignee not in (None, user.name):
        account = find_account(conn, assignee) if conn is not None else None
        raise NotAllowed(f"案件 {case_id} 已分派给 {account.label if account else assignee}，请选择其他案件")
    if claim is not None and claim.holder != user.name:
        raise CaseClaimed(claim)


class ClaimRepository:
    def __init__(self, db: ReviewDatabase) -> None:
        self._db = db

    def claim(self, case_id: str, user: User, *, duration_s: float, takeover: bool = False) -> Claim:
        """``user`` holds the new case for ``duration_s`` from now; their own claim is renewed. CaseClaimed
        while another holds it, unless a supervisor takes it over (``takeover``), which the entry records."""
        if takeover and user.role is not AccountRole.SUPERVISOR:
            raise NotAllowed("只有中队长可以接管他人认领的案件")
        with self._db.change(user.name, "claim", case_id) as change:
            status, assignee, held = _claim_state(change.conn, case_id)
            taken_from = held.holder if takeover and held is not None and held.holder != user.name else None
            refuse_unless_open_to(user, case_id, status, assignee, None if taken_from else held, change.conn)
            holder = find_account(change.conn, user.name) or user
            claim = Claim(user.name, holder.label, clock() + duration_s)
            change.conn.execute("UPDATE cases SET claimed_by = ?, claim_expires_at = ? WHERE case_id = ?",
                                (claim.holder, claim.expires_at, case_id))
            change.record(before=held.audit_state() if held else NO_CLAIM, after=claim.audit_state(),
                          detail={**holder.identity(), **({"taken_over_from": taken_from} if taken_from else {})})
        return claim

    def release(self, case_id: str, user: User) -> None:
        """The case is free again. Only its holder releases a held case (a supervisor takes it over
        first); releasing a case nobody holds changes nothing, so it is not audited."""
        with self._db.change(user.name, "claim_release", case_id) as change:
            held = _claim_state(change.conn, case_id)[2]
            if held is None:
                change.nothing_changed()
                return
            if held.holder != user.name:
                raise CaseClaimed(held, "只有认领人可以释放，中队长可以先接管")
            change.conn.execute("UPDATE cases SET claimed_by = NULL, claim_expires_at = NULL WHERE case_id = ?",
                                (case_id,))
            change.record(before=held.audit_state(), after=NO_CLAIM)


def _claim_state(conn: sqlite3.Connection, case_id: str) -> tuple[Status, str | None, Claim | None]:
    row = conn.execute(f"SELECT status, assignee, {CLAIM_COLUMNS} FROM cases WHERE case_id = ?",
                       (case_id,)).fetchone()
    if row is None:
        raise NoSuchCase(case_id)
    return Status(row[0]), row[1], claim_from_columns(*row[2:])
