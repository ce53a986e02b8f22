"""Pick the case queue backend from a URL, so deployments switch backends by setting only."""

from __future__ import annotations

from pathlib import Path

from pipeline.queue.base import DEFAULT_VISIBILITY_TIMEOUT_S, REVIEW_GROUP, CaseQueue
from pipeline.queue.sqlite_queue import SqliteCaseQueue

DEFAULT_SQLITE_PATH = Path("var/queue/cases.sqlite3")
_SQLITE_URL_FORMS = "sqlite:///relative/path or sqlite:////absolute/path"


def open_queue(
    url: str | None,
    *,
    group: str = REVIEW_GROUP,
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
) -> CaseQueue:
    """Open the queue at ``url``.

    ``None`` gives SQLite at ``var/queue/cases.sqlite3`` under the working directory.
    SQLite URLs follow SQLAlchemy: ``sqlite:///relative/path``, ``sqlite:////absolute/path``.
    """
    if url is None:
        return SqliteCaseQueue(
            DEFAULT_SQLITE_PATH, group=group, visibility_timeout_s=visibility_timeout_s
        )
    # Error messages never echo the URL: a Redis URL can carry a password.
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"a SQLite case queue URL is {_SQLITE_URL_FORMS}")
        return SqliteCaseQueue(rest[1:], group=group, visibility_timeout_s=visibility_timeout_s)
    if scheme in ("redis", "rediss"):
        raise NotImplementedError(
            "the Redis Streams case queue arrives with the backends work and is not built yet;"
            " use a sqlite:/// URL or leave the queue URL unset"
        )
    raise ValueError(f"unsupported case queue URL: expected {_SQLITE_URL_FORMS}")
