"""The in-memory bus with faults: duplicated, delayed, reordered and redelivered messages, failing
publishes, and crashes that put a consumer's unacked messages back in its queues (as RabbitMQ does
when a channel closes)."""

from __future__ import annotations

import asyncio
from typing import Any

from cirasa.cli.sim.faults import FaultPlan
from cirasa.common.bus import MemoryBroker, MemoryBus
from cirasa.common.bus.base import Outcome, Subscription
from cirasa.common.events import Event
from cirasa.common.store import Inbox

Message = tuple[bytes, str]


class SimQueue(asyncio.Queue[Message]):
    """A queue where a message may jump ahead of others (the reorder fault)."""

    faults: FaultPlan

    def _put(self, item: Message) -> None:
        queue: Any = self._queue  # type: ignore[attr-defined]
        if queue and self.faults.strikes("reorder"):
            queue.insert(self.faults.randrange(len(queue)), item)
        else:
            queue.append(item)

    def requeue(self, item: Message) -> None:
        """Back at the head, as an unacked message is (no fault here: this is recovery)."""
        self._queue.appendleft(item)  # type: ignore[attr-defined]
        self._unfinished_tasks += 1  # type: ignore[attr-defined]
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]


class SimBroker(MemoryBroker):
    """Routes in a fixed order (not by string hash), and duplicates or delays deliveries."""

    def __init__(self, faults: FaultPlan) -> None:
        super().__init__()
        self.faults = faults
        self.delayed = 0
        self.consumers: dict[str, SimBus] = {}

    def declare(self, queue: str, routing_key: str) -> asyncio.Queue[Message]:
        if queue not in self.queues:
            q = SimQueue()
            q.faults = self.faults
            self.queues[queue] = q
        self.bindings.setdefault(routing_key, set()).add(queue)
        return self.queues[queue]

    def route(self, body: bytes, routing_key: str) -> None:
        for name in sorted(self.bindings.get(routing_key, ())):
            self._deliver(name, (body, routing_key))
            if self.faults.strikes("duplicate"):
                self._deliver(name, (body, routing_key))

    def _deliver(self, name: str, message: Message) -> None:
        if self.faults.strikes("delay"):
            self.delayed += 1
            asyncio.get_running_loop().call_later(self.faults.uniform(0.1, 20.0), self._late, name, message)
        else:
            self.queues[name].put_nowait(message)

    def _late(self, name: str, message: Message) -> None:
        self.delayed -= 1
        self.queues[name].put_nowait(message)

    def pending(self) -> int:
        """Messages not yet acked anywhere: queued, held back, or in a consumer's hands."""
        queued = sum(q.qsize() for q in self.queues.values())
        return queued + self.delayed + sum(len(b.inflight) for b in self.consumers.values())


class SimBus(MemoryBus):
    """A consumer whose unacked messages survive its crash, and whose publishes may fail."""

    def __init__(self, service: str, broker: SimBroker, exchange: str, inbox: Inbox) -> None:
        super().__init__(service, broker, exchange, inbox)
        self.sim_broker = broker
        self.inflight: dict[int, Message] = {}
        self._next = 0
        broker.consumers[f"{service}:{id(self)}"] = self

    async def _worker(self, sub: Subscription[Any], queue: asyncio.Queue[Message]) -> None:
        assert isinstance(queue, SimQueue)
        while True:
            message = await queue.get()
            self._next += 1
            token = self._next
            self.inflight[token] = message
            try:
                outcome = await self.consume(sub, *message)
            except asyncio.CancelledError:
                queue.requeue(message)  # the crash closed the channel: unacked, so delivered again
                raise
            finally:
                del self.inflight[token]
            if outcome is Outcome.RETRY:
                queue.requeue(message)
            if outcome is not Outcome.RETRY and self.sim_broker.faults.strikes("redeliver"):
                queue.put_nowait(message)  # the ack was lost
            queue.task_done()

    async def publish(self, event: Event) -> None:
        faults = self.sim_broker.faults
        if faults.strikes("publish_error"):
            raise ConnectionError("simulated publish failure")
        await asyncio.sleep(0)  # a broker round trip
        await super().publish(event)
        if faults.strikes("publish_lost_confirm"):
            raise ConnectionError("simulated lost publisher confirm")

    async def stop(self) -> None:
        await super().stop()
        self.sim_broker.consumers.pop(f"{self.service}:{id(self)}", None)
