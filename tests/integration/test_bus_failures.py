"""Both buses treat a failing store the same way (issue 13): an error in the inbox — before the
handler (``seen``) or after it (``mark``) — retries the message; it is never left unacked or lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cirasa.common.bus import Bus, MemoryBroker, MemoryBus, RabbitBus
from cirasa.common.events import FileUploaded
from cirasa.common.store import Inbox
from cirasa.common.store.memory import memory_client
from tests.conftest import AMQP_URL, wait_for


class FlakyInbox(Inbox):
    """The inbox of a store that fails the first ``failures`` calls of ``method``."""

    def __init__(self, method: str, failures: int) -> None:
        super().__init__(memory_client()[f"inbox{uuid.uuid4().hex[:8]}"])
        self.method, self.failures = method, failures

    async def _maybe_fail(self, method: str) -> None:
        if method == self.method and self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"store down during {method}")

    async def seen(self, queue: str, event_id: str) -> bool:
        await self._maybe_fail("seen")
        return await super().seen(queue, event_id)

    async def mark(self, queue: str, event_id: str) -> None:
        await self._maybe_fail("mark")
        await super().mark(queue, event_id)


def make_bus(kind: str, inbox: Inbox, exchange: str) -> Bus:
    if kind == "memory":
        bus: Bus = MemoryBus("svc", MemoryBroker(), exchange, inbox)
    else:
        bus = RabbitBus("svc", AMQP_URL, exchange, inbox)
    bus.retry_backoff_s = 0.01
    return bus


@pytest.fixture
async def delete_topology() -> AsyncIterator[list[Bus]]:
    buses: list[Bus] = []
    yield buses
    for bus in buses:
        await bus.stop()
        if isinstance(bus, RabbitBus):
            await remove_topology(bus)


async def remove_topology(bus: RabbitBus) -> None:
    import aio_pika

    from cirasa.common.bus import dead_letter_names

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for sub in bus.subscriptions:
            await channel.queue_delete(sub.queue)
        for name in (*dead_letter_names(bus.exchange), bus.exchange):
            if name.endswith("dead-letter"):
                await channel.queue_delete(name)
            else:
                await channel.exchange_delete(name)


@pytest.mark.parametrize("kind", ["memory", pytest.param("rabbit", marks=pytest.mark.rabbitmq)])
@pytest.mark.parametrize("method", ["seen", "mark"])
async def test_a_store_error_in_the_inbox_retries_the_message(
    kind: str, method: str, delete_topology: list[Bus]
) -> None:
    inbox = FlakyInbox(method, failures=2)
    bus = make_bus(kind, inbox, f"test.{uuid.uuid4().hex[:10]}")
    delete_topology.append(bus)
    handled: list[str] = []

    async def handler(ev: Any) -> None:
        handled.append(ev.event_id)

    bus.subscribe(FileUploaded, handler)
    await bus.start()
    event = FileUploaded(producer="t", correlation_id="f", user="u", file_id="f", size_bytes=1)
    await bus.publish(event)
    await wait_for(lambda: _done(inbox, bus, event.event_id), 20, "the message to be handled and marked")
    assert inbox.failures == 0 and set(handled) == {event.event_id}
    # a failed mark means the handler ran again: handlers are idempotent, the message is not lost
    assert len(handled) == (3 if method == "mark" else 1)


async def _done(inbox: Inbox, bus: Bus, event_id: str) -> bool:
    await asyncio.sleep(0)
    return await Inbox.seen(inbox, bus.subscriptions[0].queue, event_id)
