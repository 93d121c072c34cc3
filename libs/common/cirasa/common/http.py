"""The HTTP face every service has: /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Response, params
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cirasa.common.metrics import HTTP_REQUESTS

if TYPE_CHECKING:
    from cirasa.common.service import Service


def health_router(services: Sequence[Service], metrics_guard: Sequence[params.Depends] = ()) -> APIRouter:
    """``/healthz`` and ``/readyz`` for probes; ``/metrics`` behind ``metrics_guard`` (the gateway's
    authentication, when it has one on)."""
    r = APIRouter()

    @r.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok", "services": [s.name for s in services]})

    @r.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        states = {s.name: await s.ready() for s in services}
        ok = all(states.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "services": states}, status_code=200 if ok else 503
        )

    @r.get("/metrics", include_in_schema=False, dependencies=list(metrics_guard))
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r


class RequestMetrics:
    """Counts requests by route template; a plain ASGI middleware (BaseHTTPMiddleware costs ~1 ms)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()


def add_request_metrics(app: FastAPI, service: str) -> None:
    app.add_middleware(RequestMetrics, service=service)


def service_app(services: Sequence[Service], title: str) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(health_router(services))
    return app
