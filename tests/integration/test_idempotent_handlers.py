"""Store calls the hot handlers no longer make, and why that is safe.

Handlers subscribed ``idempotent`` skip the inbox: a duplicate of their events must change nothing by
the handlers' own guards (a newer ``seq``, a state they move from, ``$setOnInsert``, a unique key).
The gateway skips the ExecutionBroker's sessions for the caesar jobs it accepted itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cirasa.common.bus import MemoryBroker
from cirasa.common.events import JobStateChanged, OfferMade, TaskProposed
from cirasa.gateway.service import Gateway
from tests.conftest import Stack
from tests.integration.test_outbox import Counted


async def settled(broker: MemoryBroker) -> None:
    """Every message routed so far handled (each bus worker marks a message done after its handler)."""
    for _ in range(3):  # handlers publish in turn: wait for what they published too
        await asyncio.gather(*(queue.join() for queue in broker.queues.values()))
        await asyncio.sleep(0.05)


async def stored(stack: Stack, job_id: str, user: str) -> dict[str, Any]:
    """What each service keeps of the job, and the user's quota counters, as stored."""
    gateway, planner, accounting = (stack.services[s] for s in ("gateway", "planner", "accounting"))
    return {
        "gateway job": await gateway.db["jobs"].find_one({"_id": job_id}),
        "quota": await gateway.db["quotas"].find_one({"_id": user}),
        "proposal": await planner.db["proposals"].find_one({"_id": job_id}),
        "accounted job": await accounting.db["jobs"].find_one({"_id": job_id}),
    }


async def test_duplicates_of_a_refused_jobs_events_change_nothing(
    memory_stack: Stack, fits_image: Path
) -> None:
    broker = memory_stack.memory
    assert broker is not None
    subscriptions = {
        (s.event_cls, s.dedupe)
        for service in memory_stack.services.values()
        for s in service.bus.subscriptions
    }
    assert {(TaskProposed, False), (OfferMade, False), (JobStateChanged, False)} <= subscriptions
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("cutex", file_id, {"seedthr": 5})  # no platform runs cutex here
    await memory_stack.wait_state(job_id, {"ABORTED"})
    await settled(broker)
    events = [e for e in broker.published if e.correlation_id == job_id]
    assert {type(e) for e in events} == {TaskProposed, OfferMade, JobStateChanged}
    user = events[0].user
    before, published = await stored(memory_stack, job_id, user), len(broker.published)
    for _ in range(2):
        for event in events:  # the same events again, event ids and all: lost acks, republished outboxes
            broker.route(event.model_dump_json().encode(), event.routing_key)
        await settled(broker)
    assert await stored(memory_stack, job_id, user) == before
    assert [e for e in broker.published[published:] if e.correlation_id == job_id] == []
    assert (await memory_stack.status(job_id))["state"] == "ABORTED"


async def test_a_caesar_jobs_events_make_no_call_on_the_broker_sessions(
    memory_stack: Stack, fits_image: Path
) -> None:
    """The gateway that accepted a caesar job knows no ExecutionBroker proposal has its id."""
    gateway = memory_stack.services["gateway"]
    assert isinstance(gateway, Gateway)
    offersets, sessions = Counted(gateway.broker.offersets.raw), Counted(gateway.broker.sessions.raw)
    gateway.broker.offersets.raw, gateway.broker.sessions.raw = offersets, sessions  # type: ignore[assignment]
    file_id = await memory_stack.upload(fits_image)
    refused = await memory_stack.submit("cutex", file_id, {"seedthr": 5})
    ran = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(refused, {"ABORTED"})
    await memory_stack.wait_state(ran, {"SUCCESS"})
    assert (offersets.calls, sessions.calls) == ([], [])
    gateway._caesar_jobs.clear()  # as another replica's job would be: looked up, and nothing found
    assert memory_stack.memory is not None
    (ended,) = [
        e
        for e in memory_stack.memory.published
        if isinstance(e, JobStateChanged) and e.job_id == ran and e.state.is_terminal
    ]
    await gateway.on_job_state_changed(ended)
    assert sessions.calls == ["update_many"]
