"""The planner: "can I run this, and when?" — offers against each platform's capacity calendar.

A proposal is NEW, then one of:

* NO — no platform can run it (reasons per platform);
* OFFERED → ACCEPTED (one offer accepted, its siblings rejected), or every offer REJECTED / EXPIRED;
* WAITING → PLACED for auto-accepted tasks (caesar-rest ``POST /job``): they run as soon as capacity is
  free now, and wait (oldest first, smaller ones backfilling) while it is not; WAITING → CANCELED.

Every offer books what it offers, over its interval, until it is accepted (the booking becomes the
job's, released when the job ends), rejected or expired. Proposal changes are compare-and-swap on the
proposal's ``version`` and carry their events in the same write (outbox).

This class wires events and loops to the parts that do the work: ``offers`` (search, booking, NO),
``decisions``, ``waiting`` (auto-accepted tasks), ``expiry``, ``start_delays`` and ``backend_load``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pymongo import IndexModel

from cirasa.common.events import (
    CancelRequested,
    JobStaging,
    JobState,
    JobStateChanged,
    OfferDecision,
    TaskProposed,
    as_utc,
)
from cirasa.common.service import Loop, Service, every
from cirasa.planner.backend_load import EXTERNAL_REFRESH, BackendLoad
from cirasa.planner.capacity import CapacityBook
from cirasa.planner.decisions import Decisions
from cirasa.planner.documents import INDEXES, PROPOSALS, STAGING_STATS, STATS
from cirasa.planner.expiry import Expiry
from cirasa.planner.fit import static_fit
from cirasa.planner.offers import Offers
from cirasa.planner.proposals import Proposals
from cirasa.planner.recovery import restore_bookings
from cirasa.planner.staging import StagingEstimates
from cirasa.planner.start_delay import StartDelays
from cirasa.planner.waiting import Waiting


class Planner(Service):
    name: ClassVar[str] = "planner"
    outbox_collections: ClassVar[tuple[str, ...]] = (PROPOSALS,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        platforms = self.settings.platforms
        self.capacity = CapacityBook(self.db, platforms)
        self.proposals = Proposals(self.db[PROPOSALS], self.relay, self.name)
        self.start_delays = StartDelays(self.db[STATS], self.proposals)
        self.staging = StagingEstimates(self.db[STAGING_STATS], self.settings.staging)
        self.offers = Offers(self.capacity, self.proposals, self.start_delays.of, self.staging.estimate)
        self.expiry = Expiry(self.capacity, self.proposals)
        self.decisions = Decisions(self.capacity, self.proposals, self.expiry, self.log)
        self.waiting = Waiting(platforms, self.capacity, self.proposals, self.offers, self.log)
        self.backend_load = BackendLoad(self.settings, self.capacity, self.log)

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return INDEXES

    def register(self) -> None:
        # a proposal is stored under its correlation id: a second delivery finds it answered
        self.bus.subscribe(TaskProposed, self.on_task_proposed, idempotent=True)
        self.bus.subscribe(OfferDecision, self.on_offer_decision)
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed)
        self.bus.subscribe(CancelRequested, self.on_cancel_requested)
        self.bus.subscribe(JobStaging, self.on_job_staging)

    async def start(self) -> None:
        await self.capacity.sync_platforms()
        await restore_bookings(self.capacity, self.proposals, self.log)
        await super().start()

    def loops(self) -> list[Loop]:
        return [self._drain_loop, self._expiry_loop, self._backend_load_loop]

    async def _drain_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.drain)

    async def _expiry_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.expire)

    async def _backend_load_loop(self, stop: asyncio.Event) -> None:
        await every(EXTERNAL_REFRESH.total_seconds(), stop, self.learn_backend_load)

    # --- events ---------------------------------------------------------------------------

    async def on_task_proposed(self, ev: TaskProposed) -> None:
        fits = [static_fit(ev, p) for p in self.settings.platforms]
        usable = [f.platform for f in fits if f.ok]
        # a task no platform could ever run is stored already answered: one write, not two
        doc = await (self.proposals.open(ev) if usable else self.offers.refuse_unfit(ev, fits))
        if doc is not None and doc.state in ("WAITING", "PLACED"):
            await self.waiting.still_held(doc, ev)  # a re-proposal: say we hold it
        if doc is None or doc.state != "NEW":
            return  # answered now, or a redelivery and the first delivery got further
        if not usable:  # stored NEW by a planner that had not answered it yet
            await self.offers.say_no_fit(doc, ev, fits)
        elif ev.auto_accept:
            await self.waiting.enqueue(doc)
        else:
            await self.offers.make(doc, ev, usable)

    async def on_offer_decision(self, ev: OfferDecision) -> None:
        await self.decisions.decide(ev)

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        if ev.state is JobState.RUNNING and ev.started_at is not None:
            await self.start_delays.learn(ev.job_id, as_utc(ev.started_at))
        if ev.state.is_terminal:
            await self.waiting.job_ended(ev.job_id)

    async def on_cancel_requested(self, ev: CancelRequested) -> None:
        await self.waiting.cancel(ev)

    async def on_job_staging(self, ev: JobStaging) -> None:
        await self.staging.learn(ev)

    # --- what loops, tests and benches call -----------------------------------------------

    async def place(self, pid: str) -> bool:
        return await self.waiting.place(pid)

    async def drain(self) -> None:
        await self.waiting.drain()

    async def expire(self) -> None:
        await self.expiry.sweep()

    async def learn_backend_load(self) -> None:
        await self.backend_load.learn()

    async def start_delay(self, platform: str) -> timedelta:
        return await self.start_delays.of(platform)
