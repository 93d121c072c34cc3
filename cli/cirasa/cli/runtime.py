"""Putting services together: one per process against RabbitMQ, or all five in one process (dev)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Sequence

import httpx
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from cirasa.accounting.service import Accounting
from cirasa.common.bus import Bus, MemoryBroker, MemoryBus, RabbitBus
from cirasa.common.connections import guarded_protocol
from cirasa.common.http import service_app
from cirasa.common.service import Service
from cirasa.common.settings import Settings
from cirasa.common.store import Inbox, database_name, open_client
from cirasa.gateway.app import create_app
from cirasa.gateway.service import Gateway
from cirasa.monitor.service import Monitor
from cirasa.planner.service import Planner
from cirasa.scheduler.service import Scheduler

SERVICES: dict[str, type[Service]] = {
    cls.name: cls for cls in (Gateway, Planner, Scheduler, Monitor, Accounting)
}


def build_service(name: str, settings: Settings, memory: MemoryBroker | None = None) -> Service:
    """A service with its own database and its own bus connection."""
    db = open_client(settings)[database_name(settings, name)]
    inbox = Inbox(db)
    bus: Bus
    if memory is not None:
        bus = MemoryBus(name, memory, settings.exchange, inbox)
    else:
        bus = RabbitBus(name, settings.amqp_url, settings.exchange, inbox, settings.prefetch)
    return SERVICES[name](settings, bus, db)


GRACEFUL_SHUTDOWN_S = 10  # requests still open this long after SIGTERM are cancelled


def http_app(services: Sequence[Service]) -> FastAPI:
    gateway = next((s for s in services if isinstance(s, Gateway)), None)
    if gateway is not None:
        return create_app(gateway, services)
    return service_app(services, title=f"CIRASA {services[0].name}")


def http_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn as every service runs it: slow and greedy clients held to ``settings.http_limits``."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=guarded_protocol(AutoHTTPProtocol, settings.http_limits),
        # a request still open (an event stream that missed ``draining``) must not hold a shutdown
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@contextlib.asynccontextmanager
async def started(services: Sequence[Service], settings: Settings) -> AsyncIterator[FastAPI]:
    """The services started (their data folders made), and their HTTP app; stopped in reverse order on
    the way out."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    for service in services:
        await service.start()
    try:
        yield http_app(services)
    finally:
        for service in reversed(services):
            await service.stop()


async def serve(services: Sequence[Service], settings: Settings) -> None:
    """Start the services, serve HTTP until SIGINT/SIGTERM, then stop them in reverse order."""
    async with started(services, settings) as app:
        freeze_startup_heap()
        server = uvicorn.Server(http_config(app, settings))  # it handles SIGINT/SIGTERM in the main thread
        app.state.draining = lambda: server.should_exit  # long-lived responses end when it turns True
        await server.serve()


GC_YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def freeze_startup_heap() -> None:
    """Keep what starting made (modules, models, the app: most of a service's objects, alive for the
    life of the process) out of the garbage collector's sight, and collect the young generation less
    often. A full collection then scans only what the service made since: over the whole heap it
    paused a service 100 to 150 ms under load, which was the submit path's p99; and at the default
    threshold (700 allocations) collections took 3 to 6% of a busy service's CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The five services started in this process on one in-memory bus, and a client of their HTTP
    app (no socket), for benches and scripts; stopped on the way out."""
    broker = MemoryBroker(record=False)  # one bus for the five
    services = [build_service(name, settings, broker) for name in SERVICES]
    async with started(services, settings) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


def run(names: Sequence[str], settings: Settings, memory: bool) -> None:
    broker = MemoryBroker(record=False) if memory else None
    services = [build_service(n, settings, broker) for n in names]
    try:
        import uvloop  # libuv's event loop: the HTTP and AMQP paths spend less CPU per message
    except ImportError:  # pragma: no cover - a platform without uvloop wheels
        asyncio.run(serve(services, settings))
    else:
        uvloop.run(serve(services, settings))
