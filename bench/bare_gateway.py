"""bench/bare_gateway: the baseline for the submit path — FastAPI + FastStream, no database.

    .venv/bin/python bench/bare_gateway.py --port 8100 --exchange bench.bare [--amqp-url URL]

Serves caesar's ``POST /caesar/api/v1.0/job``: validates the body (``app``, ``data_inputs``,
``job_inputs``, optional ``tag`` and ``walltime_s``) with a small pydantic model, publishes one
persistent TaskProposed-like message with publisher confirms to a durable topic exchange (routing key
``task.proposed``) and answers 202 with a job id. Nothing is stored. This is what the gateway's submit
path would cost with nothing but the HTTP framework and the broker client: ``bench/side_by_side.py``
compares the real services with it. ``/healthz`` answers once the broker is connected.

``--batch`` prices a contract that carries several events per message: a request's proposal waits
while the previous message is being confirmed, then goes out with every other proposal that arrived
meanwhile, as one message holding a JSON array (group commit; one request alone goes out at once).
Each 202 still comes after the broker confirmed the message holding its proposal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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


class GroupCommit:
    """One message in flight at a time; what arrives meanwhile goes out together next."""

    def __init__(self, send: Callable[[bytes], Awaitable[object]]) -> None:
        self._send = send
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._busy = False

    async def publish(self, item_json: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item_json, done))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._send(("[" + ",".join(item for item, _ in batch) + "]").encode())
                except Exception as exc:
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self._busy = False


def create_app(amqp_url: str, exchange_name: str, batch: bool = False) -> FastAPI:
    broker = RabbitBroker(amqp_url, default_channel=Channel(publisher_confirms=True), logger=None)
    exchange = RabbitExchange(exchange_name, type=ExchangeType.TOPIC, durable=True)
    publisher = broker.publisher(routing_key=ROUTING_KEY, exchange=exchange, persist=True)
    group = GroupCommit(lambda body: publisher.publish(body, content_type="application/json"))

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
        if batch:
            await group.publish(proposal.model_dump_json())
        else:
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
    parser.add_argument("--batch", action="store_true", help="several proposals per message (group commit)")
    args = parser.parse_args()
    app = create_app(args.amqp_url, args.exchange, args.batch)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, loop=args.loop)


if __name__ == "__main__":
    main()
