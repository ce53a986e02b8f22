"""Episode snapshots in Redis, so the worker that takes a camera over continues its episodes."""

from __future__ import annotations

import json

import redis

from pipeline.types import BackendUnavailable

from .leases import DEFAULT_PREFIX

KEEP_S = 24 * 3600  # far beyond any cool-down: a snapshot older than that holds nothing alive


class RedisEpisodeMemory:
    """``<prefix>:episodes:<camera id>``: the camera's last snapshot, JSON."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix

    def save(self, snapshots: dict[str, dict]) -> None:
        if not snapshots:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for camera_id, snapshot in snapshots.items():
                pipe.set(self._key(camera_id), json.dumps(snapshot), ex=KEEP_S)
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"fleet Redis unreachable: {exc}") from exc

    def load(self, camera_id: str) -> dict:
        try:
            value = self._redis.get(self._key(camera_id))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"fleet Redis unreachable: {exc}") from exc
        return json.loads(value) if value else {}

    def _key(self, camera_id: str) -> str:
        return f"{self._prefix}:episodes:{camera_id}"
