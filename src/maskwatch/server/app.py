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


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a body over `limit` bytes with 413: at once when Content-Length says so,
    else as soon as the streamed bytes pass it (chunked uploads cannot slip by)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            bad = not length.isdigit()
            await self._refuse(send, 400 if bad else 413,
                               "Content-Length is not a number" if bad else self._message(int(length)))
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, 413, self._message(seen))

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.limit} bytes (MASKWATCH_MAX_UPLOAD_BYTES)"

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        await JSONResponse({"detail": detail}, status_code=status)({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


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

    app = FastAPI(title="maskwatch", version=maskwatch.__version__, lifespan=lifespan,
                  description="Finds faces in photos and live cameras and labels each `mask`, `no_mask` or "
                              "`incorrect`. With MASKWATCH_API_KEY set every route but /v1/health needs the key.")
    app.state.maskwatch = state
    keyed = [Depends(require_key)]
    app.include_router(stats.health_router)
    for module in (detect, cameras, events):
        app.include_router(module.router, dependencies=keyed)
    app.include_router(stats.router, dependencies=keyed)
    app.include_router(dashboard.router)
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

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = route_of(request.scope)
        state.metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        state.metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return response

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    return app
