"""Both buses treat a failing store the same way (issue 13): an error in the inbox — before the
handler (``seen``) or after it (``mark``) — retries the message; it is never left unacked or lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from cirasa.common.bus import Bus
from cirasa.common.store import Inbox
from cirasa.common.store.memory import memory_client
from tests.buses import an_event, recording_bus, stop_and_remove
from tests.conftest import wait_for


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


@pytest.fixture
async def buses() -> AsyncIterator[list[Bus]]:
    made: list[Bus] = []
    yield made
    await stop_and_remove(made)


@pytest.mark.parametrize("kind", ["memory", pytest.param("rabbit", marks=pytest.mark.rabbitmq)])
@pytest.mark.parametrize("method", ["seen", "mark"])
async def test_a_store_error_in_the_inbox_retries_the_message(
    kind: str, method: str, buses: list[Bus]
) -> None:
    inbox = FlakyInbox(method, failures=2)
    bus, handled = await recording_bus(kind, inbox, buses)
    event = an_event()
    await bus.publish(event)
    await wait_for(lambda: _done(inbox, bus, event.event_id), 20, "the message to be handled and marked")
    assert inbox.failures == 0 and set(handled) == {event.event_id}
    # a failed mark means the handler ran again: handlers are idempotent, the message is not lost
    assert len(handled) == (3 if method == "mark" else 1)


async def _done(inbox: Inbox, bus: Bus, event_id: str) -> bool:
    await asyncio.sleep(0)
    return await Inbox.seen(inbox, bus.subscriptions[0].queue, event_id)
