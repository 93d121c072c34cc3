"""Slow and greedy HTTP clients cannot exhaust a service (issue 9).

uvicorn waits for a request's headers and body as long as a client keeps the socket open, so a
client sending one header line every few seconds holds a connection (and a file descriptor) for
ever; a thousand of them and the process can no longer accept ``/readyz``. The protocol class made
by :func:`guarded_protocol` adds, to uvicorn's own:

* a **header deadline**: a connection that has not sent a whole request head within
  ``header_timeout_s`` of opening (or of its previous response) is closed;
* a **body idle time-out**: a request whose body stops arriving for ``body_idle_s`` is closed;
* **caps on connections waiting for a request**, per client address and in all: a new connection
  beyond a cap closes the *oldest* waiting one, so a well-behaved client (which sends its request at
  once) always gets through, whoever floods the port.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

from cirasa.common.settings import HttpLimits

SWEEP_INTERVAL_S = 0.5


@dataclass
class _Registry:
    """The connections of one server that wait for a request, oldest first."""

    limits: HttpLimits
    waiting: OrderedDict[Any, float] = field(default_factory=OrderedDict)
    by_client: defaultdict[str, OrderedDict[Any, float]] = field(
        default_factory=lambda: defaultdict(OrderedDict)
    )
    open: set[Any] = field(default_factory=set)
    sweeper: asyncio.TimerHandle | None = None

    def wait(self, conn: Any, client: str) -> None:
        now = time.monotonic()
        self.waiting[conn] = now
        self.by_client[client][conn] = now
        mine = self.by_client[client]
        if len(mine) > self.limits.waiting_per_client:
            _close(next(iter(mine)))
        if len(self.waiting) > self.limits.waiting_total:
            _close(next(iter(self.waiting)))

    def served(self, conn: Any, client: str) -> None:
        self.waiting.pop(conn, None)
        mine = self.by_client.get(client)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_client[client]

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        late = [c for c, since in self.waiting.items() if now - since > self.limits.header_timeout_s]
        idle = [c for c in self.open if c.body_pending() and now - c.last_data > self.limits.body_idle_s]
        for conn in late + idle:
            _close(conn)
        self.sweeper = loop.call_later(SWEEP_INTERVAL_S, self.sweep, loop) if self.open else None


def _close(conn: Any) -> None:
    conn.forget()
    conn.transport.close()


def guarded_protocol(base: type[asyncio.Protocol], limits: HttpLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's ``base`` HTTP protocol (h11 or httptools) with the guards above."""
    registry = _Registry(limits)

    class Guarded(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.last_data = time.monotonic()
            peer = transport.get_extra_info("peername")
            self.client_key = str(peer[0]) if peer else "?"
            registry.open.add(self)
            registry.wait(self, self.client_key)
            if registry.sweeper is None:
                registry.sweeper = self.loop.call_later(SWEEP_INTERVAL_S, registry.sweep, self.loop)

        def data_received(self, data: bytes) -> None:
            self.last_data = time.monotonic()
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                registry.served(self, self.client_key)  # a whole request head has arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                registry.wait(self, self.client_key)  # keep-alive: the next request has a deadline too

        def connection_lost(self, exc: Exception | None) -> None:
            self.forget()
            super().connection_lost(exc)

        def body_pending(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and bool(cycle.more_body)

        def forget(self) -> None:
            registry.served(self, self.client_key)
            registry.open.discard(self)

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
