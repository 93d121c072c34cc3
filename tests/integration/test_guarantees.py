"""One test per delivery guarantee that no other test pinned (issue 13): each fails when its guarantee
is removed, as ``scripts/mutants.py`` checks by removing them one at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from cirasa.common.bus import Bus
from cirasa.common.events import (
    FileUploaded,
    JobState,
    JobStateChanged,
    JobSubmitted,
    Resources,
    TaskProposed,
    utcnow,
)
from cirasa.common.outbox import outbox_entries
from tests.buses import an_event, an_inbox, recording_bus, stop_and_remove
from tests.conftest import AMQP_URL, API, Stack, wait_for


@pytest.fixture
async def buses() -> AsyncIterator[list[Bus]]:
    made: list[Bus] = []
    yield made
    await stop_and_remove(made)


@pytest.mark.rabbitmq
async def test_publish_returns_only_once_the_broker_has_the_event(buses: list[Bus]) -> None:
    """Publisher confirms: a publish the broker refuses (its exchange is gone) must fail, not vanish."""
    bus, _ = await recording_bus("rabbit", an_inbox(), buses)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(bus.exchange)
    event = an_event()
    with pytest.raises(Exception):  # noqa: B017 -- whichever error aio-pika raises for the nack
        await asyncio.wait_for(bus.publish(event), timeout=10)


@pytest.mark.parametrize("kind", ["memory", pytest.param("rabbit", marks=pytest.mark.rabbitmq)])
async def test_a_duplicate_delivery_reaches_the_handler_once(kind: str, buses: list[Bus]) -> None:
    """The inbox: the same event delivered twice (a lost ack, a republish) has one effect."""
    bus, handled = await recording_bus(kind, an_inbox(), buses)
    event = an_event()
    await bus.publish(event)
    await wait_for(lambda: _handled(handled), 20, "the first delivery")
    await bus.publish(event)
    await asyncio.sleep(0.5)
    assert handled == [event.event_id]


async def _handled(handled: list[str]) -> bool:
    await asyncio.sleep(0.01)
    return bool(handled)


async def test_the_202_comes_after_the_proposal_is_published(memory_stack: Stack, fits_image: Path) -> None:
    """The outbox is flushed before the answer: the proposal is on the bus, not waiting for a sweep."""
    assert memory_stack.memory is not None
    file_id = await memory_stack.upload(fits_image)
    r = await memory_stack.client.post(
        f"{API}/job", json={"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 0.1}}
    )
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    proposals = [e for e in memory_stack.memory.published if isinstance(e, TaskProposed)]
    assert [e.correlation_id for e in proposals] == [job_id]


async def test_a_stale_state_change_is_not_applied(memory_stack: Stack, fits_image: Path) -> None:
    """The seq guard: a JobStateChanged older than what the read model has changes nothing."""
    gateway: Any = memory_stack.services["gateway"]
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 30})
    newer = JobStateChanged(
        correlation_id=job_id, job_id=job_id, state=JobState.RUNNING, seq=50, status="new"
    )
    older = JobStateChanged(
        correlation_id=job_id, job_id=job_id, state=JobState.PENDING, seq=49, status="old"
    )
    await gateway.on_job_state_changed(newer)
    await gateway.on_job_state_changed(older)
    stored = await gateway.jobs.get(job_id)
    assert (stored.state, stored.status, stored.seq) == ("RUNNING", "new", 50)


async def test_the_sweep_publishes_what_a_crash_left_in_an_outbox(memory_stack: Stack) -> None:
    """A write whose publish never happened (a crash between the two) is published by the sweep."""
    assert memory_stack.memory is not None
    gateway: Any = memory_stack.services["gateway"]
    event = FileUploaded(producer="gateway", correlation_id="lost", user="u", file_id="lost", size_bytes=1)
    entries = outbox_entries([event])
    entries[0]["queued_at"] = utcnow() - timedelta(minutes=5)
    await gateway.files.raw.insert_one({"_id": "lost", "user": "u", "deleted": False, "outbox": entries})

    async def swept() -> bool:
        doc = await gateway.files.raw.find_one({"_id": "lost"})
        published = any(e.event_id == event.event_id for e in memory_stack.memory.published)  # type: ignore[union-attr]
        return published and doc["outbox"] == []

    await wait_for(swept, 10, "the sweep to publish the lost event")


async def test_a_state_change_that_overtakes_its_job_is_kept(memory_stack: Stack) -> None:
    """ExecutionBroker jobs enter the read model with JobSubmitted; a JobStateChanged on another queue
    may come first. The job must end in its last state, not PENDING for ever (found by the simulation)."""
    gateway: Any = memory_stack.services["gateway"]
    job = uuid.uuid4().hex
    ids = {"correlation_id": job, "job_id": job, "user": "eve", "app": "sleep"}
    await gateway.on_job_state_changed(JobStateChanged(**ids, state=JobState.RUNNING, seq=1))
    await gateway.on_job_state_changed(JobStateChanged(**ids, state=JobState.SUCCESS, seq=2, exit_code=0))
    submitted = JobSubmitted(
        **ids,
        offer_id="o",
        platform="local",
        backend="local",
        resources=Resources(cores=1, memory_gib=1, duration_s=60),
    )
    await gateway.on_job_submitted(submitted)
    stored = await gateway.jobs.get(job)
    assert (stored.state, stored.seq, stored.app, stored.resources["cores"]) == ("SUCCESS", 2, "sleep", 1)
    counts = await gateway.quotas.counters.get("eve")
    assert counts is None or counts.active_jobs == 0  # counted once, given back once
