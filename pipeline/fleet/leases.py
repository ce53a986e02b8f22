"""Camera leases in Redis: which worker watches which camera, and which workers are alive.

A lease is a key ``<prefix>:lease:<camera id>`` holding the worker id, set with ``SET NX PX`` and
renewed by its holder while the holder is healthy. A worker that dies stops renewing, its leases
expire after the TTL and other workers take the cameras. Each worker also announces itself
(``<prefix>:worker:<id>``, same TTL) with its capacity, so every worker can compute the same fair
shares (:func:`pipeline.fleet.shares.fair_shares`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.types import BackendUnavailable

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "patrol:fleet"

# Keeps a lease that is ours (1), and takes back one that is gone (2): it expired while Redis was
# away, or a restarted Redis lost it. The worker still runs that camera; as long as the other workers
# hold off taking free cameras for a moment after such a loss (FleetWorker.step), nobody else started it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def connect(url: str) -> redis.Redis:
    """A client that reports an outage at once (short timeouts, one re-dial, no backoff): the
    fleet's own loop decides when to try again."""
    try:
        return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=3.0,
                                    retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
    except ValueError as exc:
        raise ValueError(f"unusable fleet Redis URL: {exc}") from None


@dataclass(frozen=True, slots=True)
class Renewal:
    lost: list[str]  # another worker holds them now: stop them here
    reclaimed: list[str]  # their lease was gone (Redis lost it): no one may have noticed yet


class LeaseBoard:
    """One worker's view of the leases; every call raises BackendUnavailable while Redis is away."""

    def __init__(self, client: redis.Redis, worker_id: str, ttl_s: float, *, prefix: str = DEFAULT_PREFIX) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease TTL must be positive, not {ttl_s}")
        self.worker_id = worker_id
        self.ttl_ms = round(ttl_s * 1000)
        self._redis = client
        self._prefix = prefix
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def lease_key(self, camera_id: str) -> str:
        return f"{self._prefix}:lease:{camera_id}"

    def announce(self, capacity: int, held: list[str]) -> bool:
        """Says this worker is alive, what it can take and what it holds, for one TTL. False when
        its previous announcement was gone (its first, or Redis lost it: see FleetWorker.step)."""
        entry = json.dumps({"capacity": capacity, "held": sorted(held), "at": time.time()})
        key = f"{self._prefix}:worker:{self.worker_id}"
        return self._call(lambda: self._redis.set(key, entry, px=self.ttl_ms, get=True)) is not None

    def withdraw(self) -> None:
        """Leaves the registry at once (a clean stop), so the others re-share without waiting a TTL."""
        self._call(lambda: self._redis.delete(f"{self._prefix}:worker:{self.worker_id}"))

    def workers(self) -> dict[str, int]:
        """Capacity of every worker that announced itself within the TTL."""
        def read() -> dict[str, int]:
            keys = list(self._redis.scan_iter(match=f"{self._prefix}:worker:*", count=500))
            values = self._redis.mget(keys) if keys else []
            found = {}
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    found[key.rsplit(":worker:", 1)[1]] = int(json.loads(value)["capacity"])
            return found
        return self._call(read)

    def holders(self, camera_ids: list[str]) -> dict[str, str | None]:
        if not camera_ids:
            return {}
        values = self._call(lambda: self._redis.mget([self.lease_key(c) for c in camera_ids]))
        return dict(zip(camera_ids, values, strict=True))

    def take(self, camera_id: str) -> bool:
        """True when the camera was free and is now this worker's."""
        return bool(self._call(lambda: self._redis.set(self.lease_key(camera_id), self.worker_id, nx=True,
                                                        px=self.ttl_ms)))

    def renew(self, camera_ids: list[str]) -> Renewal:
        """Renews this worker's leases: which cameras another worker holds now, and which leases
        were gone and are this worker's again."""
        def run() -> list[int]:
            pipe = self._redis.pipeline(transaction=False)
            for camera_id in camera_ids:
                self._renew(keys=[self.lease_key(camera_id)], args=[self.worker_id, self.ttl_ms], client=pipe)
            return pipe.execute()
        outcomes = dict(zip(camera_ids, self._call(run), strict=True)) if camera_ids else {}
        return Renewal(lost=[c for c, outcome in outcomes.items() if outcome == 0],
                       reclaimed=[c for c, outcome in outcomes.items() if outcome == 2])

    def release(self, camera_id: str) -> None:
        self._call(lambda: self._release(keys=[self.lease_key(camera_id)], args=[self.worker_id]))

    def _call(self, call):
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"fleet Redis unreachable: {exc}") from exc
