"""Delivery guarantees on the real RabbitMQ: redelivery after a crash, duplicates, poison, reconnects."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from cirasa.cli.runtime import build_service
from cirasa.common.bus import RabbitBus, dead_letter_names
from cirasa.common.events import decode_event
from cirasa.planner.ledger import stored_bookings
from cirasa.planner.service import Planner
from tests.conftest import AMQP_URL, API, VHOST, Stack, wait_for

pytestmark = pytest.mark.rabbitmq


class Tap:
    """Sees every event on the exchange, through its own exclusive queue bound to ``#``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def of(self, type_: str, correlation_id: str) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e.get("type") == type_ and e.get("correlation_id") == correlation_id
        ]


@pytest.fixture
async def tap(rabbit_stack: Stack) -> AsyncIterator[Tap]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    exchange = await channel.get_exchange(rabbit_stack.settings.exchange)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    tap = Tap()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                tap.events.append(json.loads(message.body))
            except ValueError:
                tap.events.append({"raw": message.body})

    await queue.consume(on_message)
    yield tap
    await connection.close()


async def test_duplicate_event_has_one_effect(rabbit_stack: Stack, tap: Tap, fits_image: Path) -> None:
    file_id = await rabbit_stack.upload(fits_image)
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.2})
    await rabbit_stack.wait_state(job_id, {"SUCCESS"})
    proposal = decode_event(tap.of("TaskProposed", job_id)[0])
    # the very same event (same event_id) again, and a second copy once the first is surely consumed
    await rabbit_stack.services["gateway"].bus.publish(proposal)
    await rabbit_stack.services["gateway"].bus.publish(proposal)
    await asyncio.sleep(1.5)
    assert len(tap.of("TaskProposed", job_id)) == 3
    assert len(tap.of("JobSubmitted", job_id)) == 1
    assert len(tap.of("JobDispatched", job_id)) == 1
    assert [e["state"] for e in tap.of("JobStateChanged", job_id)] == ["RUNNING", "SUCCESS"]
    assert (await rabbit_stack.status(job_id))["state"] == "SUCCESS"


async def test_consumer_killed_mid_handler_is_redelivered_and_applied_once(
    rabbit_stack: Stack, tap: Tap, fits_image: Path
) -> None:
    settings = rabbit_stack.settings
    await rabbit_stack.services["planner"].stop()
    doomed = build_service("planner", settings)
    assert isinstance(doomed, Planner)
    wrote = asyncio.Event()

    async def crash_after_write(collection: Any, doc_id: Any, written: Any = None) -> None:
        wrote.set()  # the proposal is PLACED and its events are in the outbox, not yet published
        await asyncio.Event().wait()

    doomed.relay.flush = crash_after_write  # type: ignore[method-assign]
    await doomed.start()
    file_id = await rabbit_stack.upload(fits_image)
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.1})
    await asyncio.wait_for(wrote.wait(), timeout=10)
    # kill: the connection drops with the message unacked, the process's tasks die with it
    assert isinstance(doomed.bus, RabbitBus)
    connection = doomed.bus.connection
    assert connection is not None
    await connection.close()
    for task in doomed._tasks:
        task.cancel()
    assert tap.of("JobSubmitted", job_id) == []

    survivor = build_service("planner", settings)  # same database, like a restarted pod
    await survivor.start()
    try:
        status = await rabbit_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=30)
        assert status["state"] == "SUCCESS"
        await asyncio.sleep(1.0)
        assert len(tap.of("JobSubmitted", job_id)) == 1
        assert len(tap.of("OfferMade", job_id)) == 1
        assert await stored_bookings(survivor.db, "local") == []
    finally:
        await survivor.stop()


async def test_malformed_events_go_to_the_dead_letter_queue(rabbit_stack: Stack, fits_image: Path) -> None:
    settings = rabbit_stack.settings
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        for body in (b"{not json", json.dumps({"type": "TaskProposed", "correlation_id": "x"}).encode()):
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="task.proposed",
            )
        dlq = await channel.declare_queue(dead_letter_names(settings.exchange)[1], durable=True)

        async def dead_letters() -> list[aio_pika.abc.AbstractIncomingMessage] | None:
            found = []
            while (message := await dlq.get(fail=False)) is not None:
                found.append(message)
            dead.extend(found)
            return dead if len(dead) >= 4 else None  # two bodies x (planner + accounting)

        dead: list[aio_pika.abc.AbstractIncomingMessage] = []
        await wait_for(dead_letters, 10, "four dead letters")
        errors = sorted(str(m.headers["x-error"]) for m in dead)
        assert all(e.startswith("malformed TaskProposed") for e in errors)
        assert {m.headers["x-service"] for m in dead} == {"planner", "accounting"}
    # the services carry on
    file_id = await rabbit_stack.upload(fits_image)
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.1})
    assert (await rabbit_stack.wait_state(job_id, {"SUCCESS"}))["exit_code"] == 0


async def test_services_reconnect_after_the_broker_drops_them(rabbit_stack: Stack, fits_image: Path) -> None:
    assert VHOST, "this test closes connections: it needs the session's own vhost (a local rabbitmqctl)"
    file_id = await rabbit_stack.upload(fits_image)
    subprocess.run(
        # only this session's connections: never another run's on the same broker
        ["rabbitmqctl", "close_all_connections", "--vhost", VHOST, "reconnect test"],
        check=True,
        capture_output=True,
        timeout=30,
    )

    async def all_connected() -> bool:
        return all(s.bus.connected for s in rabbit_stack.services.values())

    await asyncio.sleep(0.5)
    await wait_for(all_connected, 30, "every service to reconnect")
    await asyncio.sleep(1.0)  # consumers re-subscribe after the connection is back
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 0.1})
    assert (await rabbit_stack.wait_state(job_id, {"SUCCESS"}, timeout_s=30))["state"] == "SUCCESS"


async def test_cancel_a_running_job(rabbit_stack: Stack, fits_image: Path) -> None:
    file_id = await rabbit_stack.upload(fits_image)
    job_id = await rabbit_stack.submit("sleep", file_id, {"seconds": 60})
    await rabbit_stack.wait_state(job_id, {"RUNNING"})
    r = await rabbit_stack.client.post(f"{API}/job/{job_id}/cancel")
    assert r.status_code == 200
    status = await rabbit_stack.wait_state(job_id, {"CANCELED"}, timeout_s=15)
    assert status["exit_code"] == -1 and status["elapsed_time"] < 30
    again = await rabbit_stack.client.post(f"{API}/job/{job_id}/cancel")
    assert "nothing to be canceled" in again.json()["status"]


async def test_a_job_over_its_wall_time_is_timed_out(rabbit_stack: Stack, fits_image: Path) -> None:
    file_id = await rabbit_stack.upload(fits_image)
    r = await rabbit_stack.client.post(
        f"{API}/job",
        json={"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 60}, "walltime_s": 2},
    )
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    status = await rabbit_stack.wait_state(job_id, {"TIMED-OUT", "SUCCESS", "FAILURE"}, timeout_s=20)
    assert status["state"] == "TIMED-OUT"
    assert 1.5 < status["elapsed_time"] < 15


async def test_queue_depths_are_measured(rabbit_stack: Stack) -> None:
    planner = rabbit_stack.services["planner"]
    depths = await planner.bus.queue_depths()
    assert set(depths) == {s.queue for s in planner.bus.subscriptions}
    assert all(isinstance(n, int) and n >= 0 for n in depths.values())
