"""Builds the FastAPI app: routers, the body-size limit, metrics, error answers and the lifespan.

`create_app(settings)` is what `maskwatch serve` runs and the tests use.
Errors always come back as JSON `{"detail": ...}` with a 4xx status that
names the problem; anything unexpected is logged and answered with a plain
500 body, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import maskwatch
from maskwatch.server.deps import require_key
from maskwatch.server.routes import cameras, dashboard, detect, events, stats
from maskwatch.server.settings import Settings
from maskwatch.server.state import AppState

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuses a body over `limit` bytes with 413: at once when Content-Length says so,
    else as soon as the streamed bytes pass it (chunked uploads cannot slip by). The
    late case raises HTTPException from `receive`, inside the route that reads the body,
    so the app's own error handling answers it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            bad = not length.isdigit()
            response = JSONResponse({"detail": "Content-Length is not a number" if bad else
                                     self._message(int(length))}, status_code=400 if bad else 413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, self._message(seen))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.limit} bytes (MASKWATCH_MAX_UPLOAD_BYTES)"


class Measure:
    """Counts and times every request by route template and status (pure ASGI: it does not
    wrap the body stream, so the body limit above still raises inside the route)."""

    def __init__(self, app: ASGIApp, metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def route_of(scope: Scope) -> str:
    """The matched route's template (bounded label values), or `unmatched`."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.start()
        log.info("maskwatch server ready: %d inference workers, queue %d, data in %s", settings.workers,
                 settings.queue_size, settings.data_dir)
        try:
            yield
        finally:
            await state.stop()

    # docs_url/redoc_url off: their pages load Swagger UI from a CDN; /openapi.json is the document.
    # With a key the OpenAPI document is served by a keyed route below instead of FastAPI's open one.
    app = FastAPI(title="maskwatch", version=maskwatch.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None if settings.api_key else "/openapi.json",
                  description="Finds faces in photos and live cameras and labels each `mask`, `no_mask` or "
                              "`incorrect`. With MASKWATCH_API_KEY set every route but /v1/health needs the key.")
    app.state.maskwatch = state
    keyed = [Depends(require_key)]
    app.include_router(stats.health_router)
    for module in (detect, cameras, events):
        app.include_router(module.router, dependencies=keyed)
    app.include_router(stats.router, dependencies=keyed)
    app.include_router(dashboard.router)
    if settings.api_key:
        @app.get("/openapi.json", include_in_schema=False, dependencies=keyed)
        async def openapi_document() -> JSONResponse:
            return JSONResponse(app.openapi())

    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(Measure, metrics=state.metrics)
    return app
