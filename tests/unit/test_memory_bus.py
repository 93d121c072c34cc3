"""The in-process bus keeps what it published only when asked: tests and the simulation read it,
while ``cirasa dev`` would otherwise keep every event for as long as it runs."""

from __future__ import annotations

import asyncio

from cirasa.common.bus import MemoryBroker, MemoryBus
from cirasa.common.events import FileUploaded


def uploaded() -> FileUploaded:
    return FileUploaded(producer="t", correlation_id="f", user="u", file_id="f", size_bytes=1)


async def test_a_broker_records_what_was_published_unless_told_not_to() -> None:
    for record in (True, False):
        broker = MemoryBroker(record=record)
        bus = MemoryBus("svc", broker)
        got: list[str] = []

        async def handler(ev: FileUploaded, got: list[str] = got) -> None:
            got.append(ev.event_id)

        bus.subscribe(FileUploaded, handler)
        await bus.start()
        event = uploaded()
        await bus.publish(event)
        for _ in range(5):
            await asyncio.sleep(0)
        await bus.stop()
        assert got == [event.event_id]  # delivered either way
        assert broker.published == ([event] if record else [])
