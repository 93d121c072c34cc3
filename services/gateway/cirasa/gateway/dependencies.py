"""What routes get through FastAPI dependencies: the gateway service, the caller, a bounded body."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from cirasa.gateway.auth import current_user
from cirasa.gateway.service import Gateway


async def get_gateway(request: Request) -> Gateway:
    """The service ``create_app`` put on the app's state (a coroutine: FastAPI runs a plain function
    dependency in a worker thread, a thread hop on every request)."""
    return cast(Gateway, request.app.state.gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
UserDep = Annotated[str, Depends(current_user)]


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
