"""What every bus does the same way: subscriptions, decoding, dedupe, retries and dead-lettering."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import structlog
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from cirasa.common.events import Event, decode_event
from cirasa.common.metrics import EVENT_HANDLING, EVENTS_CONSUMED
from cirasa.common.store import Inbox

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)
# The store or the broker is away (a failover, a restart): the message is not at fault, so these are
# retried for as long as they last and never count towards dead-lettering it (found by the simulation).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (ConnectionFailure, ConnectionError)
Handler = Callable[[E], Awaitable[None]]


class Outcome(StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    RETRY = "retried"


@dataclass(frozen=True)
class Subscription(Generic[E]):
    queue: str
    event_cls: type[E]
    handler: Handler[E]
    # through the inbox (a read and an insert per delivery); False for a handler idempotent by itself
    dedupe: bool = True


class Bus(ABC):
    """Publishes events and feeds subscribed handlers, at least once, acked after the handler."""

    max_attempts = 5
    retry_backoff_s = 0.5

    def __init__(self, service: str, exchange: str, inbox: Inbox | None = None) -> None:
        self.service = service
        self.exchange = exchange
        self.inbox = inbox
        self.subscriptions: list[Subscription[Any]] = []
        self._attempts: OrderedDict[str, int] = OrderedDict()

    def queue_name(self, event_cls: type[Event]) -> str:
        return f"{self.exchange}.{self.service}.{event_cls.routing_key}"

    def subscribe(self, event_cls: type[E], handler: Handler[E], *, idempotent: bool = False) -> None:
        """Feed ``event_cls`` to ``handler``. A duplicate (a lost ack, a republish) is stopped by the
        inbox, unless the handler is ``idempotent`` by itself: its writes are conditional (a ``seq``
        guard, a state it moves from, ``$setOnInsert``, a unique key), so a second delivery changes
        nothing and the inbox's two store calls per delivery would buy nothing."""
        queue = self.queue_name(event_cls)
        self.subscriptions.append(Subscription(queue, event_cls, handler, dedupe=not idempotent))

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Return only once the broker has the event durably (publisher confirm)."""

    async def publish_stored(self, body: str) -> None:
        """Publish an event as an outbox stored it (its JSON form, written by ``model_dump_json``)."""
        await self.publish(decode_event(body))

    @abstractmethod
    async def dead_letter(self, body: bytes, routing_key: str, queue: str, error: str) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each of this service's queues."""
        return {}

    async def consume(self, sub: Subscription[Any], body: bytes, routing_key: str) -> Outcome:
        """Handle one delivery; the caller acks unless the outcome is RETRY (then it requeues).

        It never raises (but for cancellation): whatever fails — the inbox's store, the handler, the
        dead-letter publish — ends in RETRY or DEAD_LETTERED, the same on every bus.
        """
        name = sub.event_cls.__name__
        inbox = self.inbox if sub.dedupe else None
        try:
            event = sub.event_cls.model_validate_json(body)
        except ValidationError as exc:
            return await self._poison(sub, body, routing_key, f"malformed {name}: {_short(exc)}", name)
        started = time.perf_counter()
        try:
            if inbox is not None and await inbox.seen(sub.queue, event.event_id):
                EVENTS_CONSUMED.labels(self.service, name, Outcome.DUPLICATE).inc()
                return Outcome.DUPLICATE
            await sub.handler(event)
            if inbox is not None:
                await inbox.mark(sub.queue, event.event_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return await self._failed(sub, event, body, routing_key, exc)
        EVENT_HANDLING.labels(self.service, name).observe(time.perf_counter() - started)
        self._attempts.pop(event.event_id, None)
        EVENTS_CONSUMED.labels(self.service, name, Outcome.OK).inc()
        return Outcome.OK

    async def _failed(
        self, sub: Subscription[Any], event: Event, body: bytes, routing_key: str, exc: Exception
    ) -> Outcome:
        """Retry with back-off, or dead-letter after ``max_attempts`` (transient errors never count)."""
        name = sub.event_cls.__name__
        if isinstance(exc, TRANSIENT_ERRORS):
            log.warning("event.unavailable", queue=sub.queue, event_id=event.event_id, error=repr(exc))
            EVENTS_CONSUMED.labels(self.service, name, Outcome.RETRY).inc()
            await asyncio.sleep(self.retry_backoff_s)
            return Outcome.RETRY
        attempts = self._count_attempt(event.event_id)
        log.warning(
            "event.handler_failed",
            queue=sub.queue,
            event_id=event.event_id,
            attempt=attempts,
            error=repr(exc),
        )
        if attempts >= self.max_attempts:
            return await self._poison(
                sub, body, routing_key, f"handler failed {attempts} times: {exc!r}", name
            )
        EVENTS_CONSUMED.labels(self.service, name, Outcome.RETRY).inc()
        await asyncio.sleep(self.retry_backoff_s * attempts)
        return Outcome.RETRY

    async def _poison(
        self, sub: Subscription[Any], body: bytes, routing_key: str, error: str, name: str
    ) -> Outcome:
        """Dead-letter the message; if even that fails, it is tried again later (never dropped)."""
        log.error("event.dead_lettered", queue=sub.queue, error=error)
        try:
            await self.dead_letter(body, routing_key, sub.queue, error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("event.dead_letter_failed", queue=sub.queue, error=repr(exc))
            await asyncio.sleep(self.retry_backoff_s)
            return Outcome.RETRY
        EVENTS_CONSUMED.labels(self.service, name, Outcome.DEAD_LETTERED).inc()
        return Outcome.DEAD_LETTERED

    def _count_attempt(self, event_id: str) -> int:
        attempts = self._attempts.pop(event_id, 0) + 1
        self._attempts[event_id] = attempts
        while len(self._attempts) > 10_000:
            self._attempts.popitem(last=False)
        return attempts


def _short(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5]]
    return "; ".join(parts)
