"""``cirasa events``: the platform's events as they pass, for people debugging an integration.

It binds a queue of its own (exclusive, deleted when it disconnects) to the exchange with the given
routing keys, so it takes nothing from the services' queues, and prints one line per event (or the
event's JSON with ``--json``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import aio_pika
import typer

from cirasa.cli.errors import EXIT_SERVER, CliError
from cirasa.common.settings import load_settings

SHOWN = ("job_id", "state", "seq", "status", "app", "platform", "result", "offer_id", "decision")


def one_line(body: dict[str, Any], routing_key: str) -> str:
    """``12:03:05.123 job.state_changed JobStateChanged v1 job=… state=RUNNING seq=1 ...``"""
    at = str(body.get("occurred_at", ""))[11:23]
    fields = " ".join(f"{k}={body[k]}" for k in SHOWN if body.get(k) not in (None, ""))
    head = f"{at} {routing_key} {body.get('type', '?')} v{body.get('version', '?')}"
    return f"{head} corr={body.get('correlation_id', '')} {fields}".rstrip()


async def follow(
    amqp_url: str, exchange: str, keys: list[str], count: int | None, idle_s: float | None, as_json: bool
) -> int:
    """Print events until ``count`` of them (None: no limit) or ``idle_s`` seconds without one."""
    try:
        connection = await aio_pika.connect(amqp_url, timeout=10)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        raise CliError(f"cannot reach RabbitMQ at {amqp_url}: {exc}", EXIT_SERVER) from None
    seen = 0
    async with connection:
        channel = await connection.channel()
        try:
            events = await channel.get_exchange(exchange, ensure=True)
        except aio_pika.exceptions.ChannelClosed:
            raise CliError(f"no exchange {exchange!r} on {amqp_url}: is the platform running?") from None
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in keys:
            await queue.bind(events, routing_key=key)
        last = time.monotonic()
        async with queue.iterator() as messages:
            while count is None or seen < count:
                timeout = None if idle_s is None else max(0.0, idle_s - (time.monotonic() - last))
                try:
                    message = await asyncio.wait_for(anext(messages), timeout)
                except TimeoutError:
                    break
                async with message.process():
                    body = json.loads(message.body)
                    typer.echo(json.dumps(body) if as_json else one_line(body, message.routing_key or ""))
                seen, last = seen + 1, time.monotonic()
    return seen


def events(
    key: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="routing key pattern, e.g. job.* (repeatable)")
    ] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until Ctrl-C")] = False,
    count: Annotated[int, typer.Option(min=1, help="without --follow: stop after this many")] = 20,
    idle: Annotated[
        float, typer.Option(min=0.1, help="without --follow: stop after this long quiet (s)")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="each event's whole JSON, one per line")] = False,
) -> None:
    """Print the platform's events as they pass (CIRASA_AMQP_URL, CIRASA_EXCHANGE name the broker)."""
    settings = load_settings()
    keys = key or ["#"]
    try:
        seen = asyncio.run(
            follow(
                settings.amqp_url,
                settings.exchange,
                keys,
                None if follow_ else count,
                None if follow_ else idle,
                as_json,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if not follow_ and seen == 0:
        typer.echo(f"no events on {settings.exchange} ({', '.join(keys)}) for {idle:g} s", err=True)
