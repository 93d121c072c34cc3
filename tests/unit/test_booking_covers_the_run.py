"""Every booking for a job covers where the job can run: an offer's also covers a late accept (its time
to live) and the dispatch slack, and shrinks to the job's real interval on accept; the scheduler is told
its end (``JobSubmitted.booked_until``)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import (
    DataSource,
    JobStaging,
    JobSubmitted,
    OfferDecision,
    ResourceRequest,
    StagedSource,
    TaskProposed,
    utcnow,
)
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.planner import decisions, expiry, offers, recovery, waiting
from cirasa.planner.calendar import DISPATCH_SLACK, Booking
from cirasa.planner.recovery import restore_bookings
from cirasa.planner.service import Planner

DURATION = timedelta(minutes=10)
TTL = timedelta(seconds=60)


class Clock:
    """The planner's time, in whole seconds (as a store keeps it) and moved only by the test."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    now = Clock()
    for module in (offers, waiting, decisions, expiry, recovery):
        monkeypatch.setattr(module, "utcnow", now)
    return now


def task(name: str, auto_accept: bool = False) -> TaskProposed:
    return TaskProposed(
        correlation_id=name,
        app="sleep",
        auto_accept=auto_accept,
        resources=ResourceRequest(min_cores=2, max_cores=2, duration_s=int(DURATION.total_seconds())),
    )


async def a_planner(settings: Settings) -> tuple[Planner, MemoryBroker]:
    settings.platforms = [
        PlatformConfig(
            name="p",
            cores=2,
            memory_gib=4,
            max_duration_s=3600,
            offer_ttl_s=int(TTL.total_seconds()),
            offer_share=1,  # one user: the booking, not the share, is under test
        )
    ]
    broker = MemoryBroker()
    planner = build_service("planner", settings, broker)
    assert isinstance(planner, Planner)
    await planner.capacity.sync_platforms()
    return planner, broker


async def the_booking(planner: Planner) -> Booking:
    (booking,) = (await planner.capacity.state("p")).bookings
    return booking


def submitted(broker: MemoryBroker) -> JobSubmitted:
    (job,) = [ev for ev in broker.published if isinstance(ev, JobSubmitted)]
    return job


async def test_an_offer_accepted_late_runs_inside_its_booking_which_then_shrinks(
    settings: Settings, clock: Clock
) -> None:
    planner, broker = await a_planner(settings)
    await planner.on_task_proposed(task("late"))
    offered = await the_booking(planner)
    doc = await planner.proposals.docs.get("late")
    assert doc is not None
    (offer,) = doc.offers
    # the user is offered the job's own interval; the booking also holds a late accept and the slack
    assert (offer.start, offer.end) == (offered.start, offered.start + DURATION)
    assert offered.end == offer.start + DURATION + TTL + DISPATCH_SLACK

    assert offer.start == clock.now and offer.expires_at == clock.now + TTL
    accepted_at = clock.now = offer.expires_at - timedelta(seconds=1)  # as late as it can be accepted
    await planner.on_offer_decision(
        OfferDecision(correlation_id="late", offer_id=offer.offer_id, decision="ACCEPTED")
    )

    job = await the_booking(planner)
    assert job.kind == "job" and job.job_id == offer.offer_id
    assert job.start <= accepted_at and accepted_at + DURATION + DISPATCH_SLACK <= job.end  # the run fits
    assert (job.start, job.end) == (accepted_at, accepted_at + DURATION + DISPATCH_SLACK)  # and no more
    assert job.end < offered.end  # the rest of the offer's booking is given back
    assert submitted(broker).booked_until == job.end
    assert submitted(broker).start == offer.start  # what the user was offered stays as it was

    await planner.on_task_proposed(task("next"))  # the next job may start where the shrunk booking ends
    nxt = await planner.proposals.docs.get("next")
    assert nxt is not None and nxt.offers[0].start == job.end


async def test_an_offer_accepted_before_its_start_keeps_its_start(settings: Settings, clock: Clock) -> None:
    planner, broker = await a_planner(settings)
    await planner.on_task_proposed(task("first"))
    await planner.on_task_proposed(task("second"))  # offered after the first one's whole booking
    doc = await planner.proposals.docs.get("second")
    assert doc is not None
    (offer,) = doc.offers
    assert offer.start == clock.now + DURATION + TTL + DISPATCH_SLACK  # after the first one's booking
    await planner.on_offer_decision(
        OfferDecision(correlation_id="second", offer_id=offer.offer_id, decision="ACCEPTED")
    )
    (job,) = [b for b in (await planner.capacity.state("p")).bookings if b.kind == "job"]
    assert (job.start, job.end) == (offer.start, offer.end + DISPATCH_SLACK)
    assert submitted(broker).booked_until == job.end


async def test_an_auto_accepted_job_books_the_slack_and_is_told_its_end(
    settings: Settings, clock: Clock
) -> None:
    planner, broker = await a_planner(settings)
    await planner.on_task_proposed(task("auto", auto_accept=True))
    job = await the_booking(planner)
    assert job.kind == "job" and (job.start, job.end) == (clock.now, clock.now + DURATION + DISPATCH_SLACK)
    assert submitted(broker).booked_until == job.end


async def test_lost_bookings_are_restored_with_their_whole_length(settings: Settings, clock: Clock) -> None:
    planner, _ = await a_planner(settings)
    await planner.on_task_proposed(task("auto", auto_accept=True))
    await planner.on_task_proposed(task("offered"))
    held = sorted((await planner.capacity.state("p")).bookings, key=lambda b: b.start)
    await planner.capacity.release("p", {b.holder for b in held})  # the platform document lost them
    assert await restore_bookings(planner.capacity, planner.proposals, planner.log) == 2
    assert sorted((await planner.capacity.state("p")).bookings, key=lambda b: b.start) == held


async def test_racing_placements_of_one_task_keep_its_booking(settings: Settings, clock: Clock) -> None:
    planner, broker = await a_planner(settings)
    doc = await planner.proposals.open(task("raced", auto_accept=True))
    assert doc is not None and await planner.proposals.cas(doc, state="WAITING")
    placed = await asyncio.gather(planner.place("raced"), planner.place("raced"))  # a delivery and the drain
    assert sorted(placed) == [False, True]
    job = await the_booking(planner)  # the loser did not free the winner's booking (the same holder)
    assert job.job_id == "raced" and submitted(broker).booked_until == job.end


def with_data(name: str, auto_accept: bool = False) -> TaskProposed:
    """A task with 50 MB to fetch: at the assumed 10 MB/s and 1 s set-up, 6 s of staging."""
    source = DataSource(
        name="sky", scheme="http", location="https://h.example/sky.fits", size_bytes=50_000_000
    )
    return task(name, auto_accept).model_copy(update={"staging": [source]})


STAGING = timedelta(seconds=6)


async def test_staging_is_booked_before_the_run_and_the_scheduler_starts_it_there(
    settings: Settings, clock: Clock
) -> None:
    planner, broker = await a_planner(settings)
    await planner.on_task_proposed(with_data("data"))
    offered = await the_booking(planner)
    doc = await planner.proposals.docs.get("data")
    assert doc is not None
    (offer,) = doc.offers
    # the job is offered to start once staged; its booking starts with the staging
    assert offer.staging_s == STAGING.total_seconds() and offer.start == offered.start + STAGING
    assert offered.end == offered.start + STAGING + DURATION + TTL + DISPATCH_SLACK
    accepted_at = clock.now = offer.expires_at - timedelta(seconds=1)
    await planner.on_offer_decision(
        OfferDecision(correlation_id="data", offer_id=offer.offer_id, decision="ACCEPTED")
    )
    job = await the_booking(planner)  # a late accept: staged from then, then run, all inside
    assert (job.start, job.end) == (accepted_at, accepted_at + STAGING + DURATION + DISPATCH_SLACK)
    sent = submitted(broker)
    assert sent.staging_s == STAGING.total_seconds() and sent.staging == doc.task.staging
    assert sent.start is not None and sent.start - STAGING == offered.start  # staging starts at the booking

    held = (await planner.capacity.state("p")).bookings
    await planner.capacity.release("p", {b.holder for b in held})
    assert await restore_bookings(planner.capacity, planner.proposals, planner.log) == 1
    (restored,) = (await planner.capacity.state("p")).bookings  # restored with its staging, or more
    assert restored.start <= job.start and job.end <= restored.end


async def test_an_auto_accepted_job_with_data_books_its_staging(settings: Settings, clock: Clock) -> None:
    planner, broker = await a_planner(settings)
    await planner.on_task_proposed(with_data("auto", auto_accept=True))
    job = await the_booking(planner)
    assert (job.start, job.end) == (clock.now, clock.now + STAGING + DURATION + DISPATCH_SLACK)
    assert submitted(broker).start == clock.now + STAGING and submitted(broker).booked_until == job.end


async def test_the_bandwidth_from_an_origin_is_learnt_from_what_was_staged(
    settings: Settings, clock: Clock
) -> None:
    planner, _ = await a_planner(settings)
    source = with_data("x").staging[0]
    assumed = await planner.staging.estimate(with_data("x"), "p")
    assert assumed.seconds == pytest.approx(1 + 50e6 / 10e6)  # set-up and the assumed 10 MB/s
    measured = StagedSource(
        name="other", source="h.example", key="k", size_bytes=20_000_000, seconds=1.0, cached=False
    )
    await planner.on_job_staging(
        JobStaging(correlation_id="y", job_id="y", platform="p", done=True, sources=[measured])
    )
    learnt = await planner.staging.estimate(with_data("x"), "p")
    assert learnt.seconds == pytest.approx(1 + 50e6 / 20e6)  # the origin measured at 20 MB/s
    assert source.origin() == "h.example" and learnt.fetched == 1 and learnt.cached == 0
