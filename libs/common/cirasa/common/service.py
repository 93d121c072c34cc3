"""What the five services share: a bus, a database, an outbox relay and background loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import structlog
from pymongo import IndexModel

from cirasa.common.bus import Bus
from cirasa.common.metrics import QUEUE_DEPTH
from cirasa.common.outbox import OutboxRelay
from cirasa.common.settings import Settings
from cirasa.common.store import Database, Inbox, ensure_indexes, ping

log = structlog.get_logger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]
QUEUE_DEPTH_INTERVAL_S = 10.0


class Service:
    """Base of every service. Subclasses subscribe handlers in ``register`` and add loops."""

    name: ClassVar[str]
    outbox_collections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Settings, bus: Bus, db: Database) -> None:
        self.settings = settings
        self.bus = bus
        self.db = db
        self.relay = OutboxRelay(bus, [db[c] for c in self.outbox_collections], self.name)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.log = structlog.get_logger(self.name)

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {}

    def register(self) -> None:
        """Subscribe handlers on ``self.bus``."""

    def loops(self) -> list[Loop]:
        """Background loops, each run until the stop event is set."""
        return []

    async def start(self) -> None:
        await ensure_indexes(self.db, {Inbox.COLLECTION: Inbox.indexes(), **self.indexes()})
        self.register()
        await self.bus.start()
        self._stop.clear()
        loops: list[Loop] = [self._outbox_loop, self._queue_depth_loop, *self.loops()]
        self._tasks = [asyncio.create_task(self._guard(loop)) for loop in loops]
        self.log.info("service.started", service=self.name)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.stop()
        self.log.info("service.stopped", service=self.name)

    async def ready(self) -> bool:
        return self.bus.connected and await ping(self.db)

    async def _outbox_loop(self, stop: asyncio.Event) -> None:
        if self.outbox_collections:
            await self.relay.run(self.settings.outbox_sweep_s, stop)

    async def _queue_depth_loop(self, stop: asyncio.Event) -> None:
        async def measure() -> None:
            keys = {sub.queue: sub.event_cls.routing_key for sub in self.bus.subscriptions}
            for queue, depth in (await self.bus.queue_depths()).items():
                QUEUE_DEPTH.labels(self.name, keys.get(queue, queue)).set(depth)

        with contextlib.suppress(TimeoutError):  # nothing to measure in the first seconds
            await asyncio.wait_for(stop.wait(), timeout=QUEUE_DEPTH_INTERVAL_S)
        await every(QUEUE_DEPTH_INTERVAL_S, stop, measure)

    async def _guard(self, loop: Loop) -> None:
        """Keep a loop alive: log and restart it after an unexpected error."""
        while not self._stop.is_set():
            try:
                await loop(self._stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception(
                    "service.loop_crashed", loop=getattr(loop, "__name__", "?"), error=repr(exc)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=1.0)


async def every(interval_s: float, stop: asyncio.Event, action: Callable[[], Awaitable[Any]]) -> None:
    """Run ``action`` every ``interval_s`` until ``stop``; a failing round is logged, not fatal."""
    while not stop.is_set():
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("loop.round_failed", action=getattr(action, "__name__", "?"), error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
