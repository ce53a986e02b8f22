"""`create_app(settings)`: the officers' review service, JSON API and web page in one FastAPI app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import pipeline
from pipeline.evidence import open_evidence_store
from pipeline.queue import CaseQueue, open_queue
from pipeline.review import pages, routers
from pipeline.review.auth import LoginRequired, PasswordChangeRequired, api_roles
from pipeline.review.body_limit import BodyLimit
from pipeline.review.cameras import CameraBoard
from pipeline.review.errors import ReviewError
from pipeline.review.intake import CaseIntake, NotesReader
from pipeline.review.map_tiles import tile_origin
from pipeline.review.openapi_refusals import add_transport_refusals
from pipeline.review.services import ReviewServices
from pipeline.review.settings import ReviewSettings
from pipeline.review.signed_heads import HeadSigner, anchor_paths
from pipeline.review.store import ReviewStore
from pipeline.review.validation_messages import in_chinese
from pipeline.review.vocabulary import AccountRole
from pipeline.review.workflow import load_workflow_config
from pipeline.types import BackendUnavailable

STATIC = Path(__file__).parent / "web" / "static"


def create_app(settings: ReviewSettings, *, environ: Mapping[str, str] = os.environ) -> FastAPI:
    """Opens the review store, evidence store and camera files now (errors raise here, not at the
    first request); the queue intake runs while the app does. ``app.state.review.close()`` releases
    the stores once the app is done with.

    ValueError for an unusable queue or evidence setting, audit signing key or workflow table, OSError for a key or
    signed heads file it cannot write, ConfigError for a bad camera file.
    """
    def queue() -> CaseQueue:
        return open_queue(settings.queue_url)

    queue().close()  # a malformed URL fails now; an unreachable backend is fine (Redis connects on first use)
    cameras = CameraBoard(settings.streams_dir, [str(url) for url in settings.metrics_urls],
                          timeout_s=settings.metrics_timeout_s)
    evidence = open_evidence_store(settings.evidence_url, environ)
    signer = HeadSigner(*anchor_paths(settings.db_path, settings.audit_key, settings.signed_heads))
    store = ReviewStore(settings.db_path, signer)
    intake = CaseIntake(queue, store.cases, consumer=settings.consumer, block_s=settings.intake_block_s,
                        max_backoff_s=settings.intake_max_backoff_s)
    review = ReviewServices(settings=settings, store=store, evidence=evidence, intake=intake,
                            notes=NotesReader(queue), cameras=cameras, signer=signer,
                            workflow=load_workflow_config(settings.workflow_config))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The stores stay open across lifespans (ReviewServices.close ends them): a test client
        # or server may start and stop the app more than once.
        intake.start()
        try:
            yield
        finally:
            intake.stop()
            review.notes.close()

    app = FastAPI(
        title="智能五长 案件审核 (patrol review service)",
        version=pipeline.__version__,
        description="Officers review the patrol's cases: list and filter, see the evidence, decide, export. "
                    "Every route needs a user: POST /api/login for a bearer token.",
        lifespan=lifespan,
        openapi_tags=routers.OPENAPI_TAGS,
        # FastAPI's /docs and /redoc load their scripts from a public CDN; the schema is served below, to a user.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.review = review
    _add_openapi_route(app)
    app.include_router(routers.api_router)
    app.include_router(pages.router)
    # Style sheet, script and icons only, no case data: served without a user so the login page has them.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    app.add_middleware(BodyLimit)  # added before the security headers, so its 413 gets them too
    _add_security_headers(app, getattr(review.evidence, "endpoint", None),
                          tile_origin(settings.map_tiles) if settings.map_tiles else None)
    return app


def _add_openapi_route(app: FastAPI) -> None:
    def openapi_with_refusals() -> dict:
        # 413 and 503 come from the middleware and the error handlers, so no route declares them itself.
        if app.openapi_schema is None:
            app.openapi_schema = add_transport_refusals(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi_with_refusals

    # Supervisors and admins, who script against the API; officers work on the page.
    @app.get("/openapi.json", include_in_schema=False,
             dependencies=[Depends(api_roles(AccountRole.SUPERVISOR, AccountRole.ADMIN))])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/openapi"))


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError) -> Response:
        message = exc.describe(request.app.state.review.settings.display_timezone)
        if _wants_html(request):
            return pages.error_page(request, exc.status_code, message)
        return JSONResponse({"detail": message, "code": exc.code}, status_code=exc.status_code)

    @app.exception_handler(BackendUnavailable)
    async def backend_unavailable(request: Request, exc: BackendUnavailable) -> Response:
        message = f"存储服务暂时无法连接，请稍后再试（{exc}）"
        if _wants_html(request):
            return pages.error_page(request, 503, message)
        return JSONResponse({"detail": message}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request) and exc.status_code in (403, 404, 405):
            return pages.error_page(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = in_chinese(exc.errors())
        if _wants_html(request):
            return pages.error_page(request, 422, "；".join(error["msg"] for error in errors))
        return await request_validation_exception_handler(request, RequestValidationError(errors, body=exc.body))


def _add_security_headers(app: FastAPI, object_store: str | None, map_tiles: str | None) -> None:
    # Presigned evidence URLs point at the object store, so pictures and clips may come from there;
    # the map's tiles from the one tile server an operator set, if any (map_tiles.py).
    media = "'self'" + (f" {object_store}" if object_store else "")
    images = media + (f" {map_tiles}" if map_tiles else "")
    policy = (f"default-src 'self'; img-src {images} data:; media-src {media}; script-src 'self'; "
              "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

    @app.middleware("http")
    async def security_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if _wants_html(request):
            response.headers.setdefault("Content-Security-Policy", policy)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response
