"""Pick the case queue backend from a URL, so deployments switch backends by setting only."""

from __future__ import annotations

from pipeline.config.workspace import DEFAULT_WORKSPACE
from pipeline.queue.base import DEFAULT_VISIBILITY_TIMEOUT_S, REVIEW_GROUP, CaseQueue
from pipeline.queue.redis_queue import RedisCaseQueue
from pipeline.queue.sqlite_queue import SqliteCaseQueue

DEFAULT_SQLITE_PATH = DEFAULT_WORKSPACE.queue_db
_URL_FORMS = (
    "sqlite:///relative/path, sqlite:////absolute/path,"
    " redis://[[user]:password@]host[:port][/db] or rediss://... (TLS)"
)


def open_queue(
    url: str | None,
    *,
    group: str = REVIEW_GROUP,
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
) -> CaseQueue:
    """Open the queue at ``url``.

    ``None`` gives SQLite at ``var/queue/cases.sqlite3`` under the working directory.
    SQLite URLs follow SQLAlchemy: ``sqlite:///relative/path``, ``sqlite:////absolute/path``.
    ``redis://`` and ``rediss://`` URLs (redis-py's form) give a :class:`RedisCaseQueue` on the
    stream ``patrol:cases``; it connects on first use, so opening succeeds while Redis is down and
    the first call then raises :class:`~pipeline.types.BackendUnavailable`.
    """
    if url is None:
        return SqliteCaseQueue(DEFAULT_SQLITE_PATH, group=group, visibility_timeout_s=visibility_timeout_s)
    # Error messages never echo the URL: a Redis URL can carry a password.
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError("a SQLite case queue URL is sqlite:///relative/path or sqlite:////absolute/path")
        return SqliteCaseQueue(rest[1:], group=group, visibility_timeout_s=visibility_timeout_s)
    if scheme in ("redis", "rediss"):
        return RedisCaseQueue(url, group=group, visibility_timeout_s=visibility_timeout_s)
    raise ValueError(f"unsupported case queue URL: expected {_URL_FORMS}")
