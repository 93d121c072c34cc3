"""A job is handed to its backend once, however many deliveries and due-loop rounds race for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cirasa.backends import factory
from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import InputFile, JobDispatched, JobSubmitted, Resources
from cirasa.common.settings import Settings
from cirasa.scheduler.service import Scheduler


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


async def test_racing_deliveries_submit_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = SlowBackend()
    monkeypatch.setitem(factory.FACTORIES, "local", lambda platform, s: backend)
    (settings.data_dir / "anonymous").mkdir(parents=True)
    (settings.data_dir / "anonymous" / "x.fits").write_bytes(b"SIMPLE")
    broker = MemoryBroker()
    scheduler = build_service("scheduler", settings, broker)
    assert isinstance(scheduler, Scheduler)
    ev = JobSubmitted(
        correlation_id="j1",
        job_id="j1",
        offer_id="o1",
        platform="local",
        backend="local",
        resources=Resources(cores=1, memory_gib=1, duration_s=60),
        app="sleep",
        inputs=[InputFile(file_id="f", relpath="anonymous/x.fits")],
    )
    await asyncio.gather(
        scheduler.on_job_submitted(ev), scheduler.on_job_submitted(ev), scheduler.dispatch_due()
    )
    await scheduler.dispatch_due()
    assert backend.submits == 1
    assert [e.job_id for e in broker.published if isinstance(e, JobDispatched)] == ["j1"]
