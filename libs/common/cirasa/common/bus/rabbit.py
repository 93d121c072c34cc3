"""The real bus: aio-pika over one durable topic exchange; FastStream describes it (AsyncAPI).

* one durable topic exchange (``cirasa.events``); routing keys name the event;
* one durable queue per (service, event), dead-lettering to ``<exchange>.dlx`` → ``<exchange>.dead-letter``;
* persistent messages and publisher confirms: ``publish`` returns after the broker's ack, and many
  publishes may wait for theirs at once on the one channel. A publish goes to aiormq's channel
  directly: aio-pika's ``Message`` (a locked object, its properties rebuilt on every access) cost a
  publish more than framing it; an outbox entry goes out as it was stored, not decoded and encoded
  again;
* manual ack after the handler, coalesced with the acks of the deliveries finished meanwhile
  (``acks``); a handler failure requeues, a poison message is dead-lettered with the error in the
  ``x-error`` header;
* aio-pika's robust connection reconnects and re-declares the topology and the consumers by itself.

Messages are consumed with aio-pika directly: FastStream's subscriber path (middlewares, dependency
injection, a worker-thread hop for its context) cost a consuming service about as much CPU as the
handlers themselves. FastStream's broker object still names every publisher and subscriber, so
``cirasa asyncapi`` documents exactly this topology.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage

from cirasa.common.bus.acks import Acks
from cirasa.common.bus.base import Bus, Outcome, Subscription
from cirasa.common.events import EVENT_TYPES, Event
from cirasa.common.metrics import EVENTS_PUBLISHED
from cirasa.common.store import Inbox

log = structlog.get_logger(__name__)

GRACEFUL_STOP_S = 10.0  # how long stop() lets the handlers in flight finish before closing


def dead_letter_names(exchange: str) -> tuple[str, str]:
    return f"{exchange}.dlx", f"{exchange}.dead-letter"


class RabbitBus(Bus):
    def __init__(
        self,
        service: str,
        amqp_url: str,
        exchange: str = "cirasa.events",
        inbox: Inbox | None = None,
        prefetch: int = 32,
    ) -> None:
        super().__init__(service, exchange, inbox)
        self._amqp_url = amqp_url
        self._prefetch = prefetch
        self.contract = _Contract(amqp_url, exchange)
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._events: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._acks = Acks()

    def subscribe(self, event_cls: type[Any], handler: Any, *, idempotent: bool = False) -> None:
        super().subscribe(event_cls, handler, idempotent=idempotent)
        self.register_as(self.service, self.subscriptions[-1])

    def register_as(self, service: str, sub: Subscription[Any]) -> None:
        """Describe ``sub`` as ``service``'s consumer in the AsyncAPI document."""
        self.contract.describe_subscriber(service, sub)

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(
            self._amqp_url, client_properties={"connection_name": self.service}
        )
        channel = self._channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._prefetch)
        dlx_name, dlq_name = dead_letter_names(self.exchange)
        self._dlx = await channel.declare_exchange(dlx_name, aio_pika.ExchangeType.FANOUT, durable=True)
        dlq = await channel.declare_queue(dlq_name, durable=True)
        await dlq.bind(self._dlx, routing_key="#")
        self._events = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for sub in self.subscriptions:
            queue = await channel.declare_queue(
                sub.queue, durable=True, arguments={"x-dead-letter-exchange": dlx_name}
            )
            await queue.bind(self._events, routing_key=sub.event_cls.routing_key)
            tag = await queue.consume(partial(self._on_message, sub))
            self._consumers.append((queue, tag))

    async def _on_message(self, sub: Subscription[Any], msg: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        tag = msg.delivery_tag or 0  # a consumer's deliveries always carry one
        try:
            outcome = await self.consume(sub, msg.body, msg.routing_key or "")
            if outcome is Outcome.RETRY:
                await self._acks.requeue(msg.channel, tag)
            else:
                self._acks.finished(msg.channel, tag)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def stop(self) -> None:
        """Stop consuming, let the handlers in flight finish (unacked ones come back), then close."""
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the channel is gone already: nothing more will arrive
                log.debug("bus.cancel_failed", queue=queue.name, error=repr(exc))
        self._consumers.clear()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=GRACEFUL_STOP_S)
        await self._acks.drain()  # what the handlers finished is acked, not delivered again
        if self.connection is not None:
            await self.connection.close()
        self.connection = self._channel = self._events = self._dlx = None

    async def publish(self, event: Event) -> None:
        body = event.model_dump_json().encode()
        await self._send(
            body, event.type, event.event_id, event.correlation_id, event.version, event.producer
        )

    async def publish_stored(self, body: str) -> None:
        envelope = json.loads(body)
        kind = envelope.get("type")
        if kind not in EVENT_TYPES:  # not one of ours: decoding it says what is wrong
            await super().publish_stored(body)
            return
        version, producer = envelope.get("version", 1), envelope.get("producer", "unknown")
        await self._send(
            body.encode(), kind, envelope["event_id"], envelope["correlation_id"], version, producer
        )

    async def _send(
        self, body: bytes, kind: str, event_id: str, correlation_id: str, version: int, producer: str
    ) -> None:
        """One persistent message, returning once the broker confirms it."""
        if self._channel is None:
            raise ConnectionError(f"{self.service}: the bus is not started")
        properties = aiormq.spec.Basic.Properties(
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event_id,
            correlation_id=correlation_id,
            message_type=kind,
            content_type="application/json",
            headers={"x-event-version": version, "x-producer": producer},
        )
        channel = await self._channel.get_underlay_channel()
        # mandatory=False: an event no service subscribes to is dropped, as a topic exchange does
        await channel.basic_publish(
            body,
            exchange=self.exchange,
            routing_key=EVENT_TYPES[kind].routing_key,
            properties=properties,
            mandatory=False,
        )
        EVENTS_PUBLISHED.labels(self.service, kind).inc()

    async def dead_letter(self, body: bytes, routing_key: str, queue: str, error: str) -> None:
        if self._dlx is None:
            raise ConnectionError(f"{self.service}: the bus is not started")
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            headers={
                "x-error": error[:2000],
                "x-original-queue": queue,
                "x-original-routing-key": routing_key,
                "x-service": self.service,
            },
        )
        await self._dlx.publish(message, routing_key=routing_key, mandatory=False)

    async def queue_depths(self) -> dict[str, int]:
        """A passive declare per queue: RabbitMQ answers with its message count and changes nothing."""
        if not self.subscriptions or self.connection is None:
            return {}
        depths: dict[str, int] = {}
        channel = await self.connection.channel()
        try:
            for sub in self.subscriptions:
                queue = await channel.declare_queue(sub.queue, passive=True)
                depths[sub.queue] = queue.declaration_result.message_count or 0
        finally:
            await channel.close()
        return depths

    @property
    def connected(self) -> bool:
        connection = self.connection
        return bool(connection is not None and not connection.is_closed and connection.connected.is_set())


class _Contract:
    """The topology as FastStream's broker object, never connected: what ``cirasa asyncapi`` renders."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self.broker = RabbitBroker(amqp_url, logger=None)
        self._exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
        self._dlx_name = dead_letter_names(exchange)[0]
        for cls in EVENT_TYPES.values():
            self.broker.publisher(
                routing_key=cls.routing_key,
                exchange=self._exchange,
                persist=True,
                title=cls.routing_key,
                description=(cls.__doc__ or "").strip(),
                schema=cls,
            )

    def describe_subscriber(self, service: str, sub: Subscription[Any]) -> None:
        queue = RabbitQueue(
            sub.queue,
            durable=True,
            routing_key=sub.event_cls.routing_key,
            arguments={"x-dead-letter-exchange": self._dlx_name},
        )

        async def on_message(msg: RabbitMessage) -> None:  # documentation only: never called
            raise NotImplementedError

        on_message.__name__ = f"on_{sub.event_cls.__name__}"
        self.broker.subscriber(
            queue,
            self._exchange,
            title=f"{service}:{sub.event_cls.routing_key}",
            description=f"{service} consumes {sub.event_cls.__name__}",
        )(on_message)
