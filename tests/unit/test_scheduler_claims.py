"""A job is handed to its backend once, however many deliveries and due-loop rounds race for it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from cirasa.backends import factory
from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import (
    CancelRequested,
    DataSource,
    InputFile,
    JobDispatched,
    JobStaging,
    JobSubmitted,
    Resources,
)
from cirasa.common.settings import Settings
from cirasa.scheduler import service
from cirasa.scheduler.service import Scheduler
from tests.file_server import Origin


class SlowBackend:
    kind = "local"

    def __init__(self) -> None:
        self.submits = 0

    def submit(self, spec: Any) -> str:
        self.submits += 1
        time.sleep(0.2)  # a slow backend widens the window for a second dispatcher
        return "b-1"

    def cancel(self, job: Any) -> None: ...

    def poll(self, jobs: Any) -> dict[str, Any]:
        return {}


def submitted(job_id: str, *staging: DataSource) -> JobSubmitted:
    return JobSubmitted(
        correlation_id=job_id,
        job_id=job_id,
        offer_id=f"o-{job_id}",
        platform="local",
        backend="local",
        resources=Resources(cores=1, memory_gib=1, duration_s=60),
        app="sleep",
        inputs=[InputFile(file_id="f", relpath="anonymous/x.fits")],
        staging=list(staging),
    )


def with_data(url: str) -> JobSubmitted:
    return submitted("j2", DataSource(name="sky", scheme="http", location=url))


async def a_scheduler(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, backend: SlowBackend
) -> tuple[Scheduler, MemoryBroker]:
    monkeypatch.setitem(factory.FACTORIES, "local", lambda platform, s: backend)
    (settings.data_dir / "anonymous").mkdir(parents=True)
    (settings.data_dir / "anonymous" / "x.fits").write_bytes(b"SIMPLE")
    broker = MemoryBroker()
    scheduler = build_service("scheduler", settings, broker)
    assert isinstance(scheduler, Scheduler)
    return scheduler, broker


async def test_racing_deliveries_submit_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SlowBackend()
    scheduler, broker = await a_scheduler(settings, monkeypatch, backend)
    ev = submitted("j1")
    await asyncio.gather(
        scheduler.on_job_submitted(ev), scheduler.on_job_submitted(ev), scheduler.dispatch_due()
    )
    await scheduler.dispatch_due()
    assert backend.submits == 1
    assert [e.job_id for e in broker.published if isinstance(e, JobDispatched)] == ["j1"]


async def test_a_staging_longer_than_the_claim_keeps_its_claim(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, origin: Origin
) -> None:
    """The due loop takes up a job whose claim lapsed (its dispatcher crashed); a dispatcher that is
    only slow, staging a large dataset, renews its claim, so the job is still started once."""
    monkeypatch.setattr(service, "CLAIM_TTL", timedelta(seconds=0.3))
    backend = SlowBackend()
    scheduler, broker = await a_scheduler(settings, monkeypatch, backend)
    url = origin.serve("/big.fits", b"x" * 1000, delay_s=1.2)

    async def due_loop() -> None:
        for _ in range(20):
            await scheduler.dispatch_due()
            await asyncio.sleep(0.1)

    await asyncio.gather(scheduler.on_job_submitted(with_data(url)), due_loop())
    assert backend.submits == 1
    assert [e.job_id for e in broker.published if isinstance(e, JobDispatched)] == ["j2"]
    done = [e for e in broker.published if isinstance(e, JobStaging) and e.done]
    assert len(done) == 1 and done[0].done_bytes == 1000


async def test_a_cancel_during_staging_stops_the_job_before_it_starts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, origin: Origin
) -> None:
    backend = SlowBackend()
    scheduler, broker = await a_scheduler(settings, monkeypatch, backend)
    url = origin.serve("/slow.fits", b"x" * 1000, delay_s=0.5)

    async def cancel_soon() -> None:
        await asyncio.sleep(0.2)
        await scheduler.on_cancel_requested(CancelRequested(correlation_id="j2", job_id="j2"))

    await asyncio.gather(scheduler.on_job_submitted(with_data(url)), cancel_soon())
    assert backend.submits == 0
    (dispatched,) = [e for e in broker.published if isinstance(e, JobDispatched)]
    assert dispatched.canceled
