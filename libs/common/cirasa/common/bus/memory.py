"""An in-process bus for ``cirasa dev`` and unit tests: same semantics, no server.

Queues are asyncio queues bound to routing keys; a RETRY outcome puts the message back, a poison
message lands in ``MemoryBroker.dead_letters`` with its error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cirasa.common.bus.base import Bus, Outcome, Subscription
from cirasa.common.events import Event
from cirasa.common.metrics import EVENTS_PUBLISHED
from cirasa.common.store import Inbox


@dataclass
class DeadLetter:
    body: bytes
    routing_key: str
    queue: str
    error: str


@dataclass
class MemoryBroker:
    """Shared by every MemoryBus of one process, like one RabbitMQ vhost. ``published`` keeps every
    event published, for tests and the simulation to read; ``cirasa dev`` turns it off (``record``),
    or a long-running process would keep them all."""

    queues: dict[str, asyncio.Queue[tuple[bytes, str]]] = field(default_factory=dict)
    bindings: dict[str, set[str]] = field(default_factory=dict)  # routing key -> queue names
    dead_letters: list[DeadLetter] = field(default_factory=list)
    published: list[Event] = field(default_factory=list)
    record: bool = True

    def declare(self, queue: str, routing_key: str) -> asyncio.Queue[tuple[bytes, str]]:
        q = self.queues.setdefault(queue, asyncio.Queue())
        self.bindings.setdefault(routing_key, set()).add(queue)
        return q

    def route(self, body: bytes, routing_key: str) -> None:
        for name in self.bindings.get(routing_key, ()):
            self.queues[name].put_nowait((body, routing_key))


class MemoryBus(Bus):
    def __init__(
        self,
        service: str,
        broker: MemoryBroker,
        exchange: str = "cirasa.events",
        inbox: Inbox | None = None,
        concurrency: int = 4,
    ) -> None:
        super().__init__(service, exchange, inbox)
        self.broker = broker
        self.concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self.retry_backoff_s = 0.05

    async def start(self) -> None:
        for sub in self.subscriptions:
            queue = self.broker.declare(sub.queue, sub.event_cls.routing_key)
            for _ in range(self.concurrency):
                self._tasks.append(asyncio.create_task(self._worker(sub, queue)))

    async def _worker(self, sub: Subscription[Any], queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        while True:
            body, routing_key = await queue.get()
            if await self.consume(sub, body, routing_key) is Outcome.RETRY:
                queue.put_nowait((body, routing_key))
            queue.task_done()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def publish(self, event: Event) -> None:
        if self.broker.record:
            self.broker.published.append(event)
        self.broker.route(event.model_dump_json().encode(), event.routing_key)
        EVENTS_PUBLISHED.labels(self.service, event.type).inc()

    async def dead_letter(self, body: bytes, routing_key: str, queue: str, error: str) -> None:
        self.broker.dead_letters.append(DeadLetter(body, routing_key, queue, error))

    @property
    def connected(self) -> bool:
        return True

    async def queue_depths(self) -> dict[str, int]:
        return {
            s.queue: self.broker.queues[s.queue].qsize()
            for s in self.subscriptions
            if s.queue in self.broker.queues
        }
