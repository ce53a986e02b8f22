"""Running the review app in a background thread, for `patrol demo` and the browser tests."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from pipeline.config.workspace import Workspace
from pipeline.review.app import create_app
from pipeline.review.auth import hash_password
from pipeline.review.errors import NotFound
from pipeline.review.settings import ReviewSettings
from pipeline.review.store import ReviewStore
from pipeline.review.vocabulary import AccountRole

DEMO_USER = "demo"
STARTUP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ReviewServer:
    url: str  # e.g. http://127.0.0.1:8000/
    user: str
    password: str  # one-time: printed once, replaced on the next start
    _server: uvicorn.Server
    _thread: threading.Thread

    def line(self) -> str:
        """What to print for a newcomer."""
        return f"[review] {self.url} — log in as {self.user} / {self.password} (a new password each start)"

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._server.config.app.state.review.close()


def start_review_server(
    var: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    streams_dir: Path | None = None,
    metrics_urls: Sequence[str] = (),
    queue_url: str | None = None,
    evidence_url: str | None = None,
    map_tiles: str | None = None,
) -> ReviewServer:
    """Serve the review page over ``var``'s queue, evidence and review store (the ``Workspace``
    layout) — what ``patrol demo`` writes.

    Gives the supervisor account ``demo`` a fresh random password each start, so a newcomer can
    review, reopen and reassign at once. ``port=0`` picks a free port; ``map_tiles``: a tile server
    under the map page (ReviewSettings.map_tiles). OSError if it cannot listen.
    """
    workspace = Workspace(var)
    settings = ReviewSettings(
        db_path=workspace.review_db,
        queue_url=queue_url or workspace.queue_url,
        evidence_url=evidence_url or str(workspace.evidence),
        streams_dir=streams_dir,
        metrics_urls=tuple(metrics_urls),
        map_tiles=map_tiles,
    )
    password = secrets.token_urlsafe(12)
    _ensure_demo_user(settings.db_path, password)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=_serve, args=(server,), name="review-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the review page cannot listen on {host}:{port} (in use?)")
        time.sleep(0.05)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    return ReviewServer(f"http://{shown_host}:{bound_port}/", DEMO_USER, password, server, thread)


def _serve(server: uvicorn.Server) -> None:
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind; the caller reports it
        pass


def _ensure_demo_user(db_path: Path, password: str) -> None:
    store = ReviewStore(db_path)
    try:
        try:
            store.accounts.set_password(DEMO_USER, hash_password(password), actor="demo", must_change=False)
        except NotFound:
            store.accounts.add_user(DEMO_USER, AccountRole.SUPERVISOR, hash_password(password), actor="demo")
    finally:
        store.close()
