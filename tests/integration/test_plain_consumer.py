"""Another CIRASA component following the platform with nothing but aio-pika and the published
schemas (docs/events.md): its own durable queue bound to the exchange, every event validated against
its JSON Schema, duplicates dropped by ``event_id``, one job followed from TaskProposed to its end."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aio_pika
import jsonschema
import pytest
from typer.testing import CliRunner

from cirasa.cli.main import app
from cirasa.common.schemas import published_schema
from tests.conftest import AMQP_URL, Stack

TERMINAL = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}
KEYS = ("task.proposed", "offer.made", "job.submitted", "job.dispatched", "job.state_changed")


async def follow_job(queue: aio_pika.abc.AbstractQueue, job_id: str) -> list[dict[str, Any]]:
    """The job's events in the order they arrived, each validated, each once; until a final state."""
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                body = json.loads(message.body)
                schema = published_schema(body["version"], body["type"])
                assert schema is not None, f"no published schema for {body['type']} v{body['version']}"
                jsonschema.validate(body, schema)
                if body["event_id"] in seen or body["correlation_id"] != job_id:
                    continue
                seen.add(body["event_id"])
                events.append(body)
                if body["type"] == "JobStateChanged" and body["state"] in TERMINAL:
                    return events
    raise AssertionError("the queue closed")


async def test_a_plain_aio_pika_consumer_follows_a_job(rabbit_stack: Stack, fits_image: Path) -> None:
    exchange_name = rabbit_stack.settings.exchange
    connection = await aio_pika.connect(AMQP_URL)
    queue_name = f"{exchange_name}.external-component"
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name, ensure=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        for key in KEYS:
            await queue.bind(exchange, routing_key=key)
        file_id = await rabbit_stack.upload(fits_image)
        job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.2})
        events = await asyncio.wait_for(follow_job(queue, job_id), timeout=60)
    finally:
        await channel.queue_delete(queue_name)
        await connection.close()

    kinds = [e["type"] for e in events]
    assert kinds[0] == "TaskProposed" and kinds[-1] == "JobStateChanged"
    assert {"OfferMade", "JobSubmitted", "JobDispatched"} <= set(kinds)
    states = [e for e in events if e["type"] == "JobStateChanged"]
    seqs = [e["seq"] for e in sorted(states, key=lambda e: e["seq"])]
    assert states[-1]["state"] == "SUCCESS" and seqs == sorted(set(seqs))
    assert {e["state"] for e in states} >= {"RUNNING", "SUCCESS"}


async def test_cirasa_events_prints_what_passes(
    rabbit_stack: Stack, fits_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRASA_AMQP_URL", AMQP_URL)
    monkeypatch.setenv("CIRASA_EXCHANGE", rabbit_stack.settings.exchange)
    args = ["events", "--key", "job.state_changed", "--count", "2", "--idle", "30"]
    watching = asyncio.create_task(asyncio.to_thread(CliRunner().invoke, app, args))
    await asyncio.sleep(1.5)  # its queue is bound
    file_id = await rabbit_stack.upload(fits_image)
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.2})
    result = await asyncio.wait_for(watching, timeout=60)
    assert result.exit_code == 0, result.output
    ours = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} job\.state_changed ")  # not the services' own logs
    lines = [line for line in result.output.splitlines() if ours.match(line)]
    printed = f"job.state_changed JobStateChanged v1 corr={job_id}"
    assert len(lines) == 2 and all(printed in line for line in lines)
    assert "state=RUNNING seq=1" in lines[0] and "state=SUCCESS seq=2" in lines[1]


def test_cirasa_events_without_a_broker_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRASA_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
    result = CliRunner().invoke(app, ["events", "--count", "1"])
    assert result.exit_code == 3
    assert result.output.strip().startswith("error: cannot reach RabbitMQ at amqp://guest:guest@127.0.0.1:1/")
    assert len(result.output.strip().splitlines()) == 1
