"""The planner books what a Slurm cluster says is busy for others, so offers start when there is room."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from cirasa.backends import factory
from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import ResourceRequest, TaskProposed, utcnow
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.planner.service import Planner


class FakeCluster:
    def __init__(self) -> None:
        self.free = 2

    def capacity(self) -> Any:
        return SimpleNamespace(
            total_cores=8, free_cores=self.free, total_memory_mb=32768, free_memory_mb=30000
        )


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    fake = FakeCluster()
    monkeypatch.setitem(factory.FACTORIES, "slurm", lambda platform, settings: fake)
    yield fake


async def test_offers_respect_the_load_of_other_users(cluster: FakeCluster, settings: Settings) -> None:
    settings.platforms = [
        PlatformConfig(name="hpc", backend="slurm", cores=8, memory_gib=32, max_duration_s=7200)
    ]
    planner = build_service("planner", settings, MemoryBroker())
    assert isinstance(planner, Planner)
    await planner.capacity.sync_platforms()
    await planner.learn_backend_load()
    state = await planner.capacity.state("hpc")
    assert [(b.holder, b.cores) for b in state.bookings] == [("external:hpc", 6)]
    task = TaskProposed(
        correlation_id="p",
        app="sleep",
        auto_accept=False,
        resources=ResourceRequest(min_cores=4, max_cores=4, duration_s=600),
    )
    window = (utcnow(), utcnow() + timedelta(hours=1))
    later = await planner.offers.candidates(task, settings.platforms[0], window, alternatives=False)
    assert later and later[0].start >= utcnow() + timedelta(seconds=50)  # after the external load's horizon
    cluster.free = 8
    await planner.learn_backend_load()
    now = await planner.offers.candidates(
        task, settings.platforms[0], (utcnow(), utcnow() + timedelta(hours=1)), False
    )
    assert now and now[0].start <= utcnow() + timedelta(seconds=1)
