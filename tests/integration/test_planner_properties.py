"""Property: two planners racing on the real RabbitMQ never over-book a platform, and release everything.

Hypothesis draws a programme of proposals, accepts, rejects and job ends; they are published in
concurrent bursts to two planner instances consuming the same queues (one database, like two
replicas). A watcher reads the platform documents continuously and records any instant at which
bookings exceed a platform's cores or memory.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cirasa.cli.runtime import build_service
from cirasa.common.bus import RabbitBus
from cirasa.common.events import (
    Event,
    JobState,
    JobStateChanged,
    OfferDecision,
    OfferMade,
    ResourceRequest,
    TaskProposed,
    utcnow,
)
from cirasa.common.service import Service
from cirasa.common.settings import MonitorSettings, PlatformConfig, Settings
from cirasa.common.store.memory import reset_memory_store
from cirasa.planner.calendar import usage_steps
from cirasa.planner.ledger import stored_bookings
from tests.conftest import AMQP_URL, delete_topology

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

# offer_share=1: one driver proposes everything, and the race, not the per-user share, is under test
PLATFORMS = [
    PlatformConfig(name="p2", cores=2, memory_gib=2, max_duration_s=3600, offer_ttl_s=1, offer_share=1),
    PlatformConfig(name="p3", cores=3, memory_gib=4, max_duration_s=3600, offer_ttl_s=1, offer_share=1),
    PlatformConfig(name="p4", cores=4, memory_gib=8, max_duration_s=3600, offer_ttl_s=1, offer_share=1),
]


@dataclass(frozen=True)
class Propose:
    min_cores: int
    extra_cores: int
    memory_gib: int
    minutes: int
    delay_minutes: int


@dataclass(frozen=True)
class Decide:
    index: int
    accept: bool


@dataclass(frozen=True)
class End:
    index: int


step = st.one_of(
    st.builds(
        Propose,
        st.integers(1, 4),
        st.integers(0, 2),
        st.integers(1, 4),
        st.integers(1, 60),  # every proposal fits p4 (4 cores, 8 GiB, an hour): offers must come
        st.integers(0, 60),
    ),
    st.builds(Decide, st.integers(0, 50), st.booleans()),
    st.builds(End, st.integers(0, 50)),
)


class Tap:
    def __init__(self, bus: RabbitBus) -> None:
        self.offers: dict[str, list[str]] = {}
        self.bus = bus

    async def on_offer(self, ev: OfferMade) -> None:
        if ev.accepted:
            self.offers.setdefault(ev.correlation_id, []).append(ev.offer_id)


async def watch(planner: Service, violations: list[str], seen: list[int], stop: asyncio.Event) -> None:
    totals = {p.name: (p.cores, p.memory_gib * 1024) for p in PLATFORMS}
    while not stop.is_set():
        for name, (cores, mib) in totals.items():
            bookings = await stored_bookings(planner.db, name)
            seen.append(len(bookings))
            for s in usage_steps(bookings, utcnow() - timedelta(days=1)):
                if s.cores > cores or s.memory_mib > mib:
                    violations.append(f"{name} at {s.start}: {s.cores} cores, {s.memory_mib} MiB")
        await asyncio.sleep(0.005)


async def run_programme(programme: list[list[Any]]) -> None:
    reset_memory_store()
    exchange = f"test.{uuid.uuid4().hex[:10]}"
    config = Settings(
        amqp_url=AMQP_URL,
        exchange=exchange,
        db_prefix=f"h{uuid.uuid4().hex[:6]}",
        platforms=PLATFORMS,
        outbox_sweep_s=0.2,
        monitor=MonitorSettings(),
    )
    planners = [build_service("planner", config) for _ in range(2)]  # two replicas, one database
    driver = RabbitBus("driver", AMQP_URL, exchange)
    tap = Tap(driver)
    driver.subscribe(OfferMade, tap.on_offer)
    violations: list[str] = []
    seen: list[int] = []
    stop = asyncio.Event()
    try:
        for planner in planners:
            await planner.start()
        await driver.start()
        watcher = asyncio.create_task(watch(planners[0], violations, seen, stop))
        proposals: list[str] = []
        accepted: list[str] = []
        for burst in programme:
            sends: list[Event] = []
            for op in burst:
                if isinstance(op, Propose):
                    pid = uuid.uuid4().hex
                    proposals.append(pid)
                    now = utcnow()
                    sends.append(
                        TaskProposed(
                            correlation_id=pid,
                            app="sleep",
                            auto_accept=False,
                            resources=ResourceRequest(
                                min_cores=op.min_cores,
                                max_cores=op.min_cores + op.extra_cores,
                                min_memory_gib=op.memory_gib,
                                max_memory_gib=op.memory_gib,
                                duration_s=op.minutes * 60,
                            ),
                            start_after=now + timedelta(minutes=op.delay_minutes),
                            start_before=now + timedelta(minutes=op.delay_minutes + 120),
                        )
                    )
                elif isinstance(op, Decide) and proposals:
                    offers = tap.offers.get(proposals[op.index % len(proposals)], [])
                    if offers:
                        offer = offers[op.index % len(offers)]
                        sends.append(
                            OfferDecision(
                                correlation_id=proposals[op.index % len(proposals)],
                                offer_id=offer,
                                decision="ACCEPTED" if op.accept else "REJECTED",
                            )
                        )
                        if op.accept:
                            accepted.append(offer)
                elif isinstance(op, End) and accepted:
                    job = accepted[op.index % len(accepted)]
                    sends.append(
                        JobStateChanged(
                            correlation_id=job, job_id=job, state=JobState.SUCCESS, seq=9, exit_code=0
                        )
                    )
            await asyncio.gather(*(driver.publish(ev) for ev in sends))
            await asyncio.sleep(0.1)
        # the end of the story: every accepted job finishes, every unaccepted offer expires
        await asyncio.sleep(0.5)
        for job in accepted:
            await driver.publish(
                JobStateChanged(correlation_id=job, job_id=job, state=JobState.FAILURE, seq=10)
            )

        async def all_released() -> bool:
            return not [b for p in PLATFORMS for b in await stored_bookings(planners[0].db, p.name)]

        deadline = asyncio.get_running_loop().time() + 20
        while not await all_released():
            assert asyncio.get_running_loop().time() < deadline, "bookings were never released"
            await asyncio.sleep(0.1)
        stop.set()
        await watcher
        assert violations == []
        if proposals:  # the property must have been exercised, not vacuously true
            assert tap.offers and max(seen) > 0
    finally:
        stop.set()
        await driver.stop()
        for planner in planners:
            await planner.stop()
        await delete_topology(exchange)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f"{exchange}.driver.offer.made")


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(step, min_size=1, max_size=12), min_size=2, max_size=6))
def test_racing_planners_never_overbook_and_release_everything(programme: list[list[Any]]) -> None:
    asyncio.run(run_programme(programme))
