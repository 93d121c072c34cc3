"""The gateway's FastAPI application."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from cirasa.common.http import add_request_metrics, health_router
from cirasa.common.service import Service
from cirasa.gateway.auth import AuthError, TokenVerifier
from cirasa.gateway.broker.routes import build_broker_router
from cirasa.gateway.caesar import build_router
from cirasa.gateway.service import Gateway
from cirasa.gateway.uws import build_router as build_uws_router
from cirasa.gateway.webpage import INDEX_HTML


def create_app(gateway: Gateway, services: Sequence[Service] = ()) -> FastAPI:
    """``services`` are every service this process runs (all five in ``cirasa dev``) for /readyz."""
    app = FastAPI(
        title="CIRASA gateway",
        version="0.1.0",
        description="caesar-rest compatible source-finding API over an event-driven execution platform",
    )
    app.state.gateway = gateway
    auth = gateway.settings.gateway.auth
    app.state.auth = TokenVerifier(auth) if auth.enabled else None
    app.include_router(health_router(list(services) or [gateway]))
    app.include_router(build_router())
    app.include_router(build_broker_router())
    app.include_router(build_uws_router())
    add_request_metrics(app, "gateway")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(INDEX_HTML)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"status": f"Invalid request: {where}: {first.get('msg')}"}, status_code=400)

    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> Response:
        return JSONResponse(
            {"error": "invalid_token", "error_description": str(exc)},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"status": str(exc.detail)}, status_code=exc.status_code)

    return app
