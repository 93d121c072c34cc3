"""A bus of each kind for the delivery tests, with a handler that records what reached it, and the
removal of whatever a RabbitMQ bus declared."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika

from cirasa.common.bus import Bus, MemoryBroker, MemoryBus, RabbitBus, dead_letter_names
from cirasa.common.events import FileUploaded
from cirasa.common.store import Inbox
from cirasa.common.store.memory import memory_client
from tests.conftest import AMQP_URL


def an_inbox() -> Inbox:
    return Inbox(memory_client()[f"inbox{uuid.uuid4().hex[:8]}"])


async def recording_bus(kind: str, inbox: Inbox, made: list[Bus]) -> tuple[Bus, list[str]]:
    """A started bus on an exchange of its own, subscribed to FileUploaded; the list fills with the
    event ids its handler was called with (once per call)."""
    exchange = f"test.{uuid.uuid4().hex[:10]}"
    bus: Bus = (
        MemoryBus("svc", MemoryBroker(), exchange, inbox)
        if kind == "memory"
        else RabbitBus("svc", AMQP_URL, exchange, inbox)
    )
    bus.retry_backoff_s = 0.01
    made.append(bus)
    handled: list[str] = []

    async def handler(ev: Any) -> None:
        handled.append(ev.event_id)

    bus.subscribe(FileUploaded, handler)
    await bus.start()
    return bus, handled


def an_event() -> FileUploaded:
    return FileUploaded(producer="t", correlation_id="f", user="u", file_id="f", size_bytes=1)


async def stop_and_remove(buses: list[Bus]) -> None:
    for bus in buses:
        await bus.stop()
        if isinstance(bus, RabbitBus):
            await remove_topology(bus)


async def remove_topology(bus: RabbitBus) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for sub in bus.subscriptions:
            await channel.queue_delete(sub.queue)
        dlx, dlq = dead_letter_names(bus.exchange)
        await channel.queue_delete(dlq)
        for name in (dlx, bus.exchange):
            await channel.exchange_delete(name)
