"""Failed logins counted per account name and per client address, and the lockouts they lead to.

The counts live in memory, per process: the service has no shared store but its SQLite file, and
a failed guess must not cost a write that waits on the officers' decisions. So each server process
counts on its own (N processes allow N times the failures) and a restart forgets the counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FailureLimit:
    kind: str  # what is counted: "account" or "address"
    failures: int  # this many within window_s ...
    window_s: float
    lockout_s: float  # ... refuse every login of that account or address for this long
    message: str  # Chinese, for the officer; {minutes} is filled in


ACCOUNT_LIMIT = FailureLimit("account", 5, 15 * 60, 15 * 60, "该账号登录失败次数过多，已锁定，请 {minutes} 分钟后再试")
# Looser than an account's: officers of one station may share an address behind its NAT.
ADDRESS_LIMIT = FailureLimit("address", 20, 15 * 60, 15 * 60, "此地址登录失败次数过多，请 {minutes} 分钟后再试")


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str
    message: str
    retry_after_s: int
    first_of_its_lockout: bool  # only this one is audited, so hammering a locked account cannot flood the log


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    refusal_seen: bool = False


class LoginThrottle:
    """Thread-safe: the login routes run in the server's thread pool."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._swept_at = clock()

    def refusal(self, name: str, address: str) -> Refusal | None:
        """Why a login of ``name`` from ``address`` is refused before its password is even checked, if it is."""
        now = self._clock()
        with self._lock:
            for limit, key in ((ACCOUNT_LIMIT, name), (ADDRESS_LIMIT, address)):
                failures = self._failures.get((limit.kind, key))
                if failures is not None and failures.locked_until > now:
                    first = not failures.refusal_seen
                    failures.refusal_seen = True
                    return _refusal(limit, failures.locked_until - now, first=first)
        return None

    def record_failure(self, name: str, address: str) -> Refusal | None:
        """Count a wrong password; the lockout it starts, if it is the last failure allowed."""
        now = self._clock()
        started: Refusal | None = None
        with self._lock:
            self._sweep(now)
            for limit, key in ((ACCOUNT_LIMIT, name), (ADDRESS_LIMIT, address)):
                failures = self._failures.setdefault((limit.kind, key), _Failures())
                _forget_before(failures.times, now - limit.window_s)
                failures.times.append(now)
                if len(failures.times) >= limit.failures:
                    failures.times.clear()
                    failures.locked_until, failures.refusal_seen = now + limit.lockout_s, False
                    started = started or _refusal(limit, limit.lockout_s, first=False)
        return started

    def record_success(self, name: str) -> None:
        """The account's own count starts again; its address's does not, or one good account would reset it."""
        with self._lock:
            self._failures.pop((ACCOUNT_LIMIT.kind, name), None)

    def _sweep(self, now: float) -> None:
        # Names and addresses that no longer count are dropped, so made-up names do not pile up.
        if now - self._swept_at < ACCOUNT_LIMIT.window_s:
            return
        self._swept_at = now
        window_s = max(ACCOUNT_LIMIT.window_s, ADDRESS_LIMIT.window_s)
        self._failures = {key: failures for key, failures in self._failures.items()
                          if failures.locked_until > now or (failures.times and failures.times[-1] > now - window_s)}


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()


def _refusal(limit: FailureLimit, remaining_s: float, *, first: bool) -> Refusal:
    retry_after_s = max(1, math.ceil(remaining_s))
    return Refusal(limit.kind, limit.message.format(minutes=math.ceil(retry_after_s / 60)), retry_after_s, first)
