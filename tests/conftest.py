"""Shared fixtures: settings in a temporary tree, the five services in memory or on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from cirasa.cli.runtime import SERVICES, build_service, http_app
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import EVENT_TYPES
from cirasa.common.service import Service
from cirasa.common.settings import MonitorSettings, PlatformConfig, Settings
from cirasa.common.store import Database, open_client
from cirasa.common.store.memory import reset_memory_store
from tests.file_server import origin  # noqa: F401 (a fixture: a real HTTP server of test files)
from tests.s3_server import bucket, s3_url  # noqa: F401 (fixtures: a real S3 server and a bucket)

if TYPE_CHECKING:
    from tests.live import LiveGateway

API = "/caesar/api/v1.0"


def _session_vhost() -> str | None:
    """A RabbitMQ vhost of this test session's own (deleted at its end, with all it holds), so tests
    never see, close or leave behind anything of another run. None when ``CIRASA_TEST_AMQP_URL``
    names a broker, or no local ``rabbitmqctl`` can make one: then the default vhost, and each test's
    own exchange, as before."""
    if os.environ.get("CIRASA_TEST_AMQP_URL") or shutil.which("rabbitmqctl") is None:
        return None
    name = f"cirasa-test-{uuid.uuid4().hex[:12]}"
    for argv in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        done = subprocess.run(["rabbitmqctl", "--quiet", *argv], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            return None
    return name


def _docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _mongodb_url() -> str | None:
    """A real MongoDB for the store code when one can be had: ``CIRASA_MONGODB_URL`` (or
    ``MONGODB_URL``), else a throw-away server through testcontainers where Docker runs, else None
    (the in-memory double, which interleaves and updates atomically like a server)."""
    url = os.environ.get("CIRASA_MONGODB_URL") or os.environ.get("MONGODB_URL")
    if url or os.environ.get("CIRASA_TEST_NO_DOCKER") or not _docker_usable():
        return url or None
    from testcontainers.community.mongodb import MongoDbContainer

    container = MongoDbContainer("mongo:7")
    container.start()
    atexit.register(container.stop)
    return str(container.get_connection_url())


VHOST = _session_vhost()
MONGODB_URL = _mongodb_url()
AMQP_URL = os.environ.get("CIRASA_TEST_AMQP_URL") or (
    f"amqp://guest:guest@127.0.0.1:5672/{VHOST}" if VHOST else "amqp://guest:guest@127.0.0.1:5672/"
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if VHOST:
        subprocess.run(
            ["rabbitmqctl", "--quiet", "delete_vhost", VHOST], capture_output=True, timeout=60, check=False
        )


def store_database(name: str) -> Database:
    """A database of its own on the store the tests use: the real server when there is one."""
    return open_client(Settings(mongodb_url=MONGODB_URL))[f"{name}_{uuid.uuid4().hex[:8]}"]


@pytest.fixture(autouse=True)
def _fresh_memory_store() -> None:
    reset_memory_store()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        amqp_url=AMQP_URL,
        exchange=f"test.{uuid.uuid4().hex[:10]}",
        mongodb_url=MONGODB_URL,
        db_prefix=f"t{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        jobs_dir=tmp_path / "jobs",
        outbox_sweep_s=0.2,
        platforms=[PlatformConfig(name="local", backend="local", cores=2, memory_gib=4, max_duration_s=3600)],
        monitor=MonitorSettings(poll_interval_s=0.1, reconcile_interval_s=0.5),
    )


@dataclass
class Stack:
    settings: Settings
    services: dict[str, Service]
    client: httpx.AsyncClient
    memory: MemoryBroker | None

    async def upload(self, path: Path) -> str:
        with path.open("rb") as fh:
            r = await self.client.post(f"{API}/upload", files={"file": (path.name, fh.read())})
        assert r.status_code == 200, r.text
        return r.json()["uuid"]

    async def submit(self, app: str, file_id: str, options: dict[str, Any]) -> str:
        r = await self.client.post(
            f"{API}/job", json={"app": app, "data_inputs": file_id, "job_inputs": options}
        )
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    async def status(self, job_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{API}/job/{job_id}/status")
        return r.json()

    async def wait_state(self, job_id: str, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        seen: list[str] = []
        status = await wait_for(
            lambda: self._status_in(job_id, states, seen), timeout_s, f"job {job_id} to reach {states}"
        )
        status["_seen"] = seen
        return status

    async def _status_in(self, job_id: str, states: set[str], seen: list[str]) -> dict[str, Any] | None:
        status = await self.status(job_id)
        if not seen or seen[-1] != status["state"]:
            seen.append(status["state"])
        return status if status["state"] in states else None


async def wait_for(
    probe: Callable[[], Awaitable[Any]], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


async def start_stack(settings: Settings, memory: bool) -> Stack:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    broker = MemoryBroker() if memory else None
    services = {name: build_service(name, settings, broker) for name in SERVICES}
    for service in services.values():
        await service.start()
    transport = httpx.ASGITransport(app=http_app(list(services.values())))
    client = httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)
    return Stack(settings, services, client, broker)


async def stop_stack(stack: Stack) -> None:
    await stack.client.aclose()
    for service in reversed(list(stack.services.values())):
        await service.stop()


@pytest.fixture
async def memory_stack(settings: Settings) -> AsyncIterator[Stack]:
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


@pytest.fixture
async def rabbit_stack(settings: Settings) -> AsyncIterator[Stack]:
    stack = await start_stack(settings, memory=False)
    yield stack
    await stop_stack(stack)
    await delete_topology(settings.exchange)


async def delete_topology(exchange: str) -> None:
    """Remove a test's exchange and queues from the shared broker."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for service in SERVICES:
            for event_cls in EVENT_TYPES.values():
                await channel.queue_delete(f"{exchange}.{service}.{event_cls.routing_key}")
        await channel.queue_delete(f"{exchange}.dead-letter")
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(f"{exchange}.dlx")


@pytest.fixture
def fits_image(tmp_path: Path) -> Path:
    from cirasa.finders.imaging import synthetic_image

    path = tmp_path / "sky.fits"
    synthetic_image(path, size=256, n_sources=12, seed=3)
    return path


@pytest.fixture
def live_gateway(settings: Settings) -> Iterator[LiveGateway]:
    """All five services in memory behind uvicorn on a free loopback port (real HTTP)."""
    from tests.live import LiveGateway

    gateway = LiveGateway(settings)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
