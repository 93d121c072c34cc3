"""``GET /cirasa/api/v1/events``: the user's jobs as server-sent events, sent again whenever one changes.

The stream reads the read model once a second (any gateway replica can serve it: none needs to have
consumed the events itself) and sends ``event: jobs`` with every job's summary when something changed,
a comment line as a heartbeat otherwise, and ends after ``MAX_STREAM_S`` (clients reconnect) or as
soon as the server starts shutting down, which would otherwise wait for it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from cirasa.gateway.caesar import finite
from cirasa.gateway.dependencies import GatewayDep, UserDep
from cirasa.gateway.service import Gateway
from cirasa.gateway.web.api import PREFIX
from cirasa.gateway.web.jobs_view import job_summaries

POLL_S = 1.0
HEARTBEAT_S = 15.0
MAX_STREAM_S = 300.0
RETRY_MS = 1000

router = APIRouter(prefix=PREFIX, tags=["web page and CLI"])


async def job_events(request: Request, gateway: Gateway, user: str) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    last, quiet_since, started = "", time.monotonic(), time.monotonic()
    draining = getattr(request.app.state, "draining", lambda: False)  # set by the HTTP server's runner
    while (
        time.monotonic() - started < MAX_STREAM_S and not draining() and not await request.is_disconnected()
    ):
        payload = json.dumps(finite(await job_summaries(gateway, user)), default=str)
        if payload != last:
            last, quiet_since = payload, time.monotonic()
            yield f"event: jobs\ndata: {payload}\n\n"
        elif time.monotonic() - quiet_since >= HEARTBEAT_S:
            quiet_since = time.monotonic()
            yield ": still here\n\n"
        await asyncio.sleep(POLL_S)


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, gateway: GatewayDep, user: UserDep) -> StreamingResponse:
    """Server-sent events: ``jobs`` (a JSON list of job summaries, as ``GET /jobs``) on every change."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        job_events(request, gateway, user), media_type="text/event-stream", headers=headers
    )
