"""Issue 13: nothing forgotten stays stuck. A proposal lost on its way is sent again (then the job is
aborted), a planner that lost its bookings rebuilds them, a monitor that lost its jobs finds them on
the backend, a scheduler that lost its record still cancels, the outbox sweep never republishes what
a request is publishing, and accounting's job size is current once a job ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from cirasa.accounting.service import Accounting
from cirasa.cli.main import memory_store_warning
from cirasa.cli.runtime import build_service
from cirasa.common.bus import Bus, MemoryBroker, MemoryBus
from cirasa.common.events import Event, JobState, JobStateChanged, TaskProposed, utcnow
from cirasa.common.outbox import CLAIM_TTL, OutboxRelay, outbox_entries, queue_claimed
from cirasa.common.settings import Settings
from cirasa.common.store.memory import memory_client
from cirasa.gateway.service import Gateway
from cirasa.planner.ledger import stored_bookings
from tests.conftest import API, Stack, wait_for

END = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}


async def restart(stack: Stack, name: str, forget: tuple[str, ...] = ()) -> Any:
    """Stop a service, drop the collections ``forget`` (a crash that lost them), start a new one."""
    old = stack.services[name]
    await old.stop()
    for collection in forget:
        await old.db[collection].delete_many({})
    new = build_service(name, stack.settings, stack.memory)
    await new.start()
    stack.services[name] = new
    return new


def gateway_of(stack: Stack) -> Gateway:
    gateway = stack.services["gateway"]
    assert isinstance(gateway, Gateway)
    return gateway


def drop_proposals(bus: Bus) -> list[TaskProposed]:
    """Lose every TaskProposed the gateway publishes (the broker acks, then loses it), until the
    bus's own ``publish`` is put back (``del bus.publish``)."""
    lost: list[TaskProposed] = []
    publish = bus.publish

    async def lossy(event: Event) -> None:
        if isinstance(event, TaskProposed):
            lost.append(event)
            return
        await publish(event)

    bus.publish = lossy  # type: ignore[method-assign]
    return lost


async def submit(stack: Stack, fits_image: Path, seconds: float) -> str:
    return await stack.submit("sleep", await stack.upload(fits_image), {"seconds": seconds})


# --- outbox ---------------------------------------------------------------------------------


class SlowBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__("svc", MemoryBroker(), "x", None)
        self.published: list[str] = []
        self.release = asyncio.Event()

    async def publish(self, event: Event) -> None:
        self.published.append(event.event_id)
        await self.release.wait()


async def test_the_sweep_skips_an_entry_the_request_is_publishing() -> None:
    coll = memory_client()["outbox_test"]["docs"]
    bus = SlowBus()
    relay = OutboxRelay(bus, [coll], "svc")
    event = JobStateChanged(correlation_id="j", job_id="j", state=JobState.RUNNING, seq=1)
    queued = queue_claimed([event])
    await coll.insert_one({"_id": "j", "outbox": queued.entries})
    flushing = asyncio.create_task(relay.flush(coll, "j", queued.entries))
    await wait_for(lambda: asyncio.sleep(0, bus.published), 5, "the fast path to publish")
    swept = await asyncio.wait_for(relay.sweep(min_age=timedelta(0)), 2)
    assert swept == 0  # claimed by the fast path: left alone
    bus.release.set()
    await flushing
    assert bus.published == [event.event_id]
    assert (await coll.find_one({"_id": "j"}))["outbox"] == []


async def test_the_sweep_publishes_what_a_crash_left_and_stale_claims() -> None:
    coll = memory_client()["outbox_test"]["docs"]
    bus = SlowBus()
    bus.release.set()
    relay = OutboxRelay(bus, [coll], "svc")
    left, stale = (JobStateChanged(correlation_id=j, job_id=j, state=JobState.RUNNING, seq=1) for j in "ab")
    await coll.insert_one({"_id": "a", "outbox": outbox_entries([left])})  # crash before the flush
    entries = outbox_entries([stale])
    entries[0]["claimed_at"] = utcnow() - CLAIM_TTL * 2  # its publisher died while publishing
    await coll.insert_one({"_id": "b", "outbox": entries})
    assert await relay.sweep(min_age=timedelta(0)) == 2
    assert sorted(bus.published) == sorted([left.event_id, stale.event_id])


# --- gateway: re-proposal -------------------------------------------------------------------


async def test_a_lost_proposal_is_sent_again_and_the_job_runs(memory_stack: Stack, fits_image: Path) -> None:
    gateway = gateway_of(memory_stack)
    lost = drop_proposals(gateway.bus)
    job_id = await submit(memory_stack, fits_image, 0.1)
    assert [e.correlation_id for e in lost] == [job_id]
    del gateway.bus.publish  # the broker is fine again
    gateway.reproposal.after_s = 0.0
    await asyncio.sleep(0.005)  # stored times have milliseconds: the job must be older than now
    await gateway.reproposal.sweep()  # or the gateway's own sweep, whichever comes first: not both
    status = await memory_stack.wait_state(job_id, END, timeout_s=30)
    assert status["state"] == "SUCCESS"  # it ran: the proposal was sent again
    assert (await gateway.jobs.get(job_id)).reproposed == 1  # type: ignore[union-attr]


async def test_a_proposal_nobody_answers_ends_aborted_with_a_reason(
    memory_stack: Stack, fits_image: Path
) -> None:
    gateway = gateway_of(memory_stack)
    lost = drop_proposals(gateway.bus)
    job_id = await submit(memory_stack, fits_image, 0.1)
    gateway.reproposal.after_s, gateway.reproposal.attempts = 0.0, 2
    for _ in range(3):
        await asyncio.sleep(0.01)
        await gateway.reproposal.sweep()
    assert len(lost) == 3  # the first proposal and two re-proposals, each a new event of the same job
    assert len({e.event_id for e in lost}) == 3 and {e.correlation_id for e in lost} == {job_id}
    status = await memory_stack.status(job_id)
    assert status["state"] == "ABORTED"
    assert "no platform answered" in status["status"]


async def test_a_queued_job_is_not_aborted(memory_stack: Stack, fits_image: Path) -> None:
    """The planner answers a re-proposal of a job it queues, so waiting for capacity is not a loss."""
    gateway = gateway_of(memory_stack)
    blockers = [await submit(memory_stack, fits_image, 30) for _ in range(2)]  # both cores
    for job in blockers:
        await memory_stack.wait_state(job, {"RUNNING"})
    queued = await submit(memory_stack, fits_image, 0.1)
    gateway.reproposal.after_s, gateway.reproposal.attempts = 0.0, 1
    for _ in range(4):
        await gateway.reproposal.sweep()
        await asyncio.sleep(0.3)
    status = await memory_stack.status(queued)
    assert status["state"] == "PENDING"
    assert status["status"].startswith("Waiting for 1 core on local, held by 1 running job until "), status
    for job in blockers:
        await memory_stack.client.post(f"{API}/job/{job}/cancel")


# --- planner: bookings ----------------------------------------------------------------------


async def test_a_planner_that_lost_its_bookings_does_not_over_book(
    memory_stack: Stack, fits_image: Path
) -> None:
    running = [await submit(memory_stack, fits_image, 30) for _ in range(2)]  # the 2 cores
    for job in running:
        await memory_stack.wait_state(job, {"RUNNING"})
    planner = await restart(memory_stack, "planner", forget=("platforms", "bookings"))
    assert {b.job_id for b in await stored_bookings(planner.db, "local")} == set(running)
    extra = await submit(memory_stack, fits_image, 0.1)
    await asyncio.sleep(1.5)
    assert (await memory_stack.status(extra))["state"] == "PENDING"  # no third core to run it on
    for job in running:
        await memory_stack.client.post(f"{API}/job/{job}/cancel")
    assert (await memory_stack.wait_state(extra, END, timeout_s=30))["state"] == "SUCCESS"


async def test_a_planner_restart_keeps_bookings_as_they_are(memory_stack: Stack, fits_image: Path) -> None:
    job = await submit(memory_stack, fits_image, 30)
    await memory_stack.wait_state(job, {"RUNNING"})
    before = await stored_bookings(memory_stack.services["planner"].db, "local")
    planner = await restart(memory_stack, "planner")
    assert await stored_bookings(planner.db, "local") == before
    await memory_stack.client.post(f"{API}/job/{job}/cancel")


# --- monitor: discovery ---------------------------------------------------------------------


async def test_a_monitor_that_lost_its_jobs_finds_them_on_the_backend(
    memory_stack: Stack, fits_image: Path
) -> None:
    job = await submit(memory_stack, fits_image, 1.5)
    await memory_stack.wait_state(job, {"RUNNING"})
    monitor = await restart(memory_stack, "monitor", forget=("jobs",))
    status = await memory_stack.wait_state(job, END, timeout_s=30)
    assert status["state"] == "SUCCESS"
    adopted = await monitor.db["jobs"].find_one({"_id": job})
    assert adopted is not None and adopted["user"] == "anonymous" and adopted["state"] == "SUCCESS"


# --- scheduler: cancel without a record -----------------------------------------------------


async def test_a_scheduler_that_lost_its_record_still_cancels(memory_stack: Stack, fits_image: Path) -> None:
    job = await submit(memory_stack, fits_image, 60)
    await memory_stack.wait_state(job, {"RUNNING"})
    await restart(memory_stack, "scheduler", forget=("dispatches",))
    r = await memory_stack.client.post(f"{API}/job/{job}/cancel")
    assert r.status_code == 200
    status = await memory_stack.wait_state(job, END, timeout_s=30)
    assert status["state"] == "CANCELED"


# --- accounting and the cli -----------------------------------------------------------------


async def test_job_size_is_measured_again_when_a_job_ends(memory_stack: Stack) -> None:
    accounting = memory_stack.services["accounting"]
    assert isinstance(accounting, Accounting)
    user_dir = memory_stack.settings.jobs_dir / "alice"
    user_dir.mkdir(parents=True)
    assert (await accounting.user_usage("alice"))["jobsize"] == 0  # measured, and cached
    (user_dir / "job_x").mkdir()
    (user_dir / "job_x" / "out.fits").write_bytes(b"\0" * 4096)
    ended = JobStateChanged(
        correlation_id="x", user="alice", job_id="x", state=JobState.SUCCESS, seq=2, app="sleep"
    )
    await accounting.on_job_state_changed(ended)
    assert (await accounting.user_usage("alice"))["jobsize"] == 4.0


def test_up_warns_that_state_dies_with_each_process(settings: Settings) -> None:
    settings.mongodb_url = None
    warning = memory_store_warning(settings)
    assert warning is not None and "dies with its process" in warning
    settings.mongodb_url = "mongodb://db:27017"
    assert memory_store_warning(settings) is None
