"""The gateway's FastAPI application: its faces' routers, and one answer per error and face."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from cirasa.common.http import add_request_metrics, health_router
from cirasa.common.service import Service
from cirasa.gateway import caesar, event_docs, tiled, uws
from cirasa.gateway.auth import TokenVerifier, current_user
from cirasa.gateway.broker import routes as broker
from cirasa.gateway.errors import GatewayError, Unauthorized
from cirasa.gateway.service import Gateway
from cirasa.gateway.web import api as web_api
from cirasa.gateway.web import events as web_events
from cirasa.gateway.web import page

ErrorForm = Callable[[Request, GatewayError], Response]
# Each face answers errors in its own form, chosen by path; caesar-rest's is the default.
ERROR_FORMS: tuple[tuple[str, ErrorForm], ...] = (
    (uws.PREFIX, uws.error_response),
    *((path, broker.error_response) for path in broker.PATHS),
)


def create_app(gateway: Gateway, services: Sequence[Service] = ()) -> FastAPI:
    """``services`` are every service this process runs (all five in ``cirasa dev``) for /readyz."""
    app = FastAPIOffline(  # /docs and /redoc from packaged assets: no CDN, so they work offline
        title="CIRASA gateway",
        version="0.1.0",
        description="caesar-rest compatible source-finding API over an event-driven execution platform",
    )
    app.state.gateway = gateway
    auth = gateway.settings.gateway.auth
    app.state.auth = TokenVerifier(auth) if auth.enabled else None
    app.include_router(health_router(list(services) or [gateway], metrics_guard=[Depends(current_user)]))
    app.include_router(caesar.router)
    app.include_router(broker.router)
    app.include_router(uws.router)
    app.include_router(web_api.router)
    app.include_router(tiled.router)
    app.include_router(web_events.router)
    app.include_router(page.router)
    app.include_router(event_docs.router)
    page.mount_static(app)
    add_request_metrics(app, "gateway")
    app.add_exception_handler(GatewayError, gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(Unauthorized, unauthorized)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    return app


async def gateway_error(request: Request, exc: GatewayError) -> Response:
    path = request.url.path
    form = next((form for prefix, form in ERROR_FORMS if path.startswith(prefix)), caesar.error_response)
    return form(request, exc)


async def unauthorized(request: Request, exc: Unauthorized) -> Response:
    """A missing or bad bearer token, answered as RFC 6750 says on every face."""
    return JSONResponse(
        {"error": "invalid_token", "error_description": exc.message},
        status_code=exc.status_code,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def bad_request(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"status": f"Invalid request: {where}: {first.get('msg')}"}, status_code=400)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"status": str(exc.detail)}, status_code=exc.status_code)
