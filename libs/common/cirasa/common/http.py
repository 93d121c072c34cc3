"""The HTTP face every service has: /healthz, /readyz and /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cirasa.common.metrics import HTTP_REQUESTS

if TYPE_CHECKING:
    from cirasa.common.service import Service


def health_router(services: Sequence[Service]) -> APIRouter:
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

    @r.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r


def add_request_metrics(app: FastAPI, service: str) -> None:
    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, request.method, template, str(response.status_code)).inc()
        response.headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response


def service_app(services: Sequence[Service], title: str) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(health_router(services))
    return app
