"""bench/bare_consumers: the event contract's own cost — a refused submission's messages, nothing else.

    .venv/bin/python bench/bare_consumers.py --role planner --exchange bench.floor [--amqp-url URL]

With ``bench/bare_gateway.py`` publishing the TaskProposed, one process per ``--role`` makes exactly
the messages one refused caesar submission makes in the five services, with the same client and the
same delivery guarantees, and nothing more (no store, no inbox, no event models, no handlers):

* ``planner``: consumes ``task.proposed``; for each, publishes an OfferMade-sized and a
  JobStateChanged-sized message (persistent, publisher confirms, both in flight at once), then acks;
  consumes ``job.state.changed`` and acks;
* ``accounting``: consumes ``task.proposed`` and ``job.state.changed`` and acks;
* ``gateway``: consumes ``offer.made`` and ``job.state.changed`` and acks (in the real gateway this
  happens in the process that serves HTTP).

Queues are named and bound as the services' (``<exchange>.<service>.<routing key>``, durable,
dead-lettering to ``<exchange>.dlx``), prefetch 32, one ack per delivery as a plain consumer does.
``bench/side_by_side.py --targets floor`` runs it: the floor under any implementation of this contract.

``--batch`` (with ``bare_gateway.py --batch``): messages hold JSON arrays of events; the planner
answers a message of proposals with one message of OfferMades and one of JobStateChangeds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import uuid
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

ROLES = {
    "planner": ("task.proposed", "job.state.changed"),
    "accounting": ("task.proposed", "job.state.changed"),
    "gateway": ("offer.made", "job.state.changed"),
}
PREFETCH = 32
KEYS = ("offer.made", "job.state.changed")  # the planner's answers to a proposal, in answers()' order


def answers(proposal: dict[str, object]) -> list[tuple[str, bytes]]:
    """The planner's NO and the job's ABORTED, about the size of the real events."""
    common = {
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "planner",
        "correlation_id": proposal.get("job_id", ""),
        "user": "anonymous",
        "version": 1,
    }
    no = {
        **common,
        "event_id": uuid.uuid4().hex,
        "type": "OfferMade",
        "offer_id": f"{proposal.get('job_id', '')}:none",
        "accepted": False,
        "reasons": ["local: the task asks 600 s of wall time, the platform allows 300 s"],
    }
    aborted = {
        **common,
        "event_id": uuid.uuid4().hex,
        "type": "JobStateChanged",
        "job_id": proposal.get("job_id", ""),
        "state": "ABORTED",
        "status": "No platform can run this task: the task asks 600 s of wall time",
        "seq": 1,
        "app": proposal.get("app", ""),
    }
    return list(zip(KEYS, (json.dumps(no).encode(), json.dumps(aborted).encode()), strict=True))


async def publish(exchange: AbstractExchange, routing_key: str, body: bytes) -> None:
    message = aio_pika.Message(
        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
    )
    await exchange.publish(message, routing_key=routing_key, mandatory=False)


async def run(role: str, amqp_url: str, exchange_name: str, stop: asyncio.Event, batch: bool) -> None:
    connection = await aio_pika.connect_robust(amqp_url, client_properties={"connection_name": role})
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)

        async def on_proposal(msg: AbstractIncomingMessage) -> None:
            proposal = json.loads(msg.body)
            if batch:  # one message per kind of answer, holding the answers to every proposal
                replies = [answers(p) for p in proposal]
                out = [(key, b"[" + b",".join(r[i][1] for r in replies) + b"]") for i, key in enumerate(KEYS)]
            else:
                out = answers(proposal)
            await asyncio.gather(*(publish(exchange, key, body) for key, body in out))
            await msg.ack()

        async def on_other(msg: AbstractIncomingMessage) -> None:
            json.loads(msg.body)
            await msg.ack()

        for key in ROLES[role]:
            queue = await channel.declare_queue(
                f"{exchange_name}.{role}.{key}",
                durable=True,
                arguments={"x-dead-letter-exchange": f"{exchange_name}.dlx"},
            )
            await queue.bind(exchange, routing_key=key)
            handler = on_proposal if (role, key) == ("planner", "task.proposed") else on_other
            await queue.consume(handler)
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--batch", action="store_true", help="messages hold JSON arrays of events")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("CIRASA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(args.role, args.amqp_url, args.exchange, stop, args.batch)

    try:
        import uvloop  # as the services run
    except ImportError:  # pragma: no cover - a platform without uvloop wheels
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
