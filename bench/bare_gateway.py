"""bench/bare_gateway: the baseline for the submit path — FastAPI + FastStream, no database.

    .venv/bin/python bench/bare_gateway.py --port 8100 --exchange bench.bare [--amqp-url URL]

Serves caesar's ``POST /caesar/api/v1.0/job``: validates the body (``app``, ``data_inputs``,
``job_inputs``, optional ``tag`` and ``walltime_s``) with a small pydantic model, publishes one
persistent TaskProposed-like message with publisher confirms to a durable topic exchange (routing key
``task.proposed``) and answers 202 with a job id. Nothing is stored. This is what the gateway's submit
path would cost with nothing but the HTTP framework and the broker client: ``bench/side_by_side.py``
compares the real services with it. ``/healthz`` answers once the broker is connected.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from faststream.rabbit.schemas import Channel
from pydantic import BaseModel, Field

ROUTING_KEY = "task.proposed"


class JobBody(BaseModel):
    """caesar-rest's job request, as far as the submit path needs it."""

    app: str = Field(min_length=1, max_length=64)
    data_inputs: str = Field(min_length=1, max_length=64)
    job_inputs: dict[str, Any] = Field(min_length=1)
    tag: str = Field("", max_length=256)
    walltime_s: int | None = Field(None, ge=1)


class Proposal(BaseModel):
    """The message published per job (about the size of the gateway's TaskProposed)."""

    event_id: str
    type: str = "TaskProposed"
    occurred_at: datetime
    job_id: str
    app: str
    data_inputs: str
    job_inputs: dict[str, Any]
    tag: str
    walltime_s: int | None


def create_app(amqp_url: str, exchange_name: str) -> FastAPI:
    broker = RabbitBroker(amqp_url, default_channel=Channel(publisher_confirms=True), logger=None)
    exchange = RabbitExchange(exchange_name, type=ExchangeType.TOPIC, durable=True)
    publisher = broker.publisher(routing_key=ROUTING_KEY, exchange=exchange, persist=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await broker.connect()
        await broker.declare_exchange(exchange)
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/caesar/api/v1.0/job", status_code=202)
    async def submit(body: JobBody) -> JSONResponse:
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        proposal = Proposal(
            event_id=str(uuid.uuid4()),
            occurred_at=now,
            job_id=job_id,
            app=body.app,
            data_inputs=body.data_inputs,
            job_inputs=body.job_inputs,
            tag=body.tag,
            walltime_s=body.walltime_s,
        )
        await publisher.publish(
            proposal.model_dump_json().encode(),
            message_id=proposal.event_id,
            content_type="application/json",
        )
        reply = {
            "app": body.app,
            "job_id": job_id,
            "job_inputs": body.job_inputs,
            "data_inputs": body.data_inputs,
            "tag": body.tag,
            "state": "PENDING",
            "status": "Job submitted",
            "submit_date": now.isoformat(),
        }
        return JSONResponse(reply, status_code=202)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--exchange", default="bench.bare")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("CIRASA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="uvicorn's event loop (auto: uvloop when installed)",
    )
    args = parser.parse_args()
    app = create_app(args.amqp_url, args.exchange)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, loop=args.loop)


if __name__ == "__main__":
    main()
