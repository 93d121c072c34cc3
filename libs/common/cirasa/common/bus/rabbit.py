"""The real bus: FastStream's RabbitBroker over one durable topic exchange.

* one durable topic exchange (``cirasa.events``); routing keys name the event;
* one durable queue per (service, event), dead-lettering to ``<exchange>.dlx`` → ``<exchange>.dead-letter``;
* persistent messages and publisher confirms: ``publish`` returns after the broker's ack;
* manual ack after the handler; a handler failure requeues, a poison message is dead-lettered
  with the error in the ``x-error`` header;
* aio-pika's robust connection reconnects and re-declares the topology by itself.
"""

from __future__ import annotations

from typing import Annotated, Any

import aio_pika
import structlog
from faststream import AckPolicy
from faststream._internal.context import Context  # the class behind faststream.Context()
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas import Channel

from cirasa.common.bus.base import Bus, Outcome, Subscription
from cirasa.common.events import EVENT_TYPES, Event
from cirasa.common.metrics import EVENTS_PUBLISHED
from cirasa.common.store import Inbox

log = structlog.get_logger(__name__)


class InLoopContext(Context):
    """FastStream's ``Context``, resolved on the event loop. Its own ``use`` is a plain function, which
    FastDepends runs in a worker thread for every message (a thread hop per delivery, measured at a
    tenth of a consuming service's CPU); a coroutine it awaits in place."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return Context.use(self, **kwargs)


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
        self.broker = RabbitBroker(
            amqp_url,
            reconnect_interval=1.0,
            graceful_timeout=10.0,
            default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True),
            logger=None,
        )
        self._exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
        dlx_name, dlq_name = dead_letter_names(exchange)
        self._dlx = RabbitExchange(dlx_name, type=ExchangeType.FANOUT, durable=True)
        self._dlq = RabbitQueue(dlq_name, durable=True)
        self._publishers = {
            cls.routing_key: self.broker.publisher(
                routing_key=cls.routing_key,
                exchange=self._exchange,
                persist=True,
                title=cls.routing_key,
                description=(cls.__doc__ or "").strip(),
                schema=cls,
            )
            for cls in EVENT_TYPES.values()
        }
        self._started = False
        self._amqp_url = amqp_url
        self._probe: aio_pika.abc.AbstractRobustConnection | None = None

    def subscribe(self, event_cls: type[Any], handler: Any) -> None:
        super().subscribe(event_cls, handler)
        self.register_as(self.service, self.subscriptions[-1])

    def register_as(self, service: str, sub: Subscription[Any]) -> None:
        """Declare a consumer for ``sub`` (``service`` only names it in the AsyncAPI document)."""
        queue = RabbitQueue(
            sub.queue,
            durable=True,
            routing_key=sub.event_cls.routing_key,
            arguments={"x-dead-letter-exchange": self._dlx.name},
        )

        async def on_message(msg: Annotated[RabbitMessage, InLoopContext("message")]) -> None:
            outcome = await self.consume(sub, msg.body, msg.raw_message.routing_key or "")
            if outcome is Outcome.RETRY:
                await msg.nack(requeue=True)
            else:
                await msg.ack()

        on_message.__name__ = f"on_{sub.event_cls.__name__}"
        self.broker.subscriber(
            queue,
            self._exchange,
            ack_policy=AckPolicy.MANUAL,
            title=f"{service}:{sub.event_cls.routing_key}",
            description=f"{service} consumes {sub.event_cls.__name__}",
        )(on_message)

    async def start(self) -> None:
        await self.broker.connect()
        await self._declare_dead_letter()
        await self.broker.start()
        self._started = True

    async def _declare_dead_letter(self) -> None:
        dlx = await self.broker.declare_exchange(self._dlx)
        dlq = await self.broker.declare_queue(self._dlq)
        await dlq.bind(dlx, routing_key="#")
        await self.broker.declare_exchange(self._exchange)

    async def stop(self) -> None:
        if self._probe is not None:
            await self._probe.close()
            self._probe = None
        if self._started:
            await self.broker.stop()
            self._started = False

    async def publish(self, event: Event) -> None:
        await self._publishers[event.routing_key].publish(
            event.model_dump_json().encode(),
            message_id=event.event_id,
            correlation_id=event.correlation_id,
            message_type=event.type,
            content_type="application/json",
            headers={"x-event-version": event.version, "x-producer": event.producer},
        )
        EVENTS_PUBLISHED.labels(self.service, event.type).inc()

    async def dead_letter(self, body: bytes, routing_key: str, queue: str, error: str) -> None:
        await self.broker.publish(
            body,
            exchange=self._dlx,
            routing_key=routing_key,
            persist=True,
            content_type="application/json",
            headers={
                "x-error": error[:2000],
                "x-original-queue": queue,
                "x-original-routing-key": routing_key,
                "x-service": self.service,
            },
        )

    async def queue_depths(self) -> dict[str, int]:
        """A passive declare per queue: RabbitMQ answers with its message count and changes nothing.

        It goes through a connection of its own: channels opened beside FastStream's on its connection
        can collide with the ones it manages and make the broker close the whole connection.
        """
        if not self.subscriptions:
            return {}
        if self._probe is None or self._probe.is_closed:
            self._probe = await aio_pika.connect_robust(
                self._amqp_url, client_properties={"connection_name": f"{self.service}-queue-depths"}
            )
        depths: dict[str, int] = {}
        channel = await self._probe.channel()
        try:
            for sub in self.subscriptions:
                queue = await channel.declare_queue(sub.queue, passive=True)
                depths[sub.queue] = queue.declaration_result.message_count or 0
        finally:
            await channel.close()
        return depths

    @property
    def connected(self) -> bool:
        connection = getattr(self.broker, "_connection", None)
        return bool(self._started and connection is not None and connection.connected.is_set())
