"""Auto-accepted tasks (caesar-rest ``POST /job``): placed as soon as capacity is free now; until then
WAITING, oldest first, smaller ones backfilling behind a big one. WAITING → PLACED, or CANCELED."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from pymongo import ASCENDING
from structlog.typing import FilteringBoundLogger

from cirasa.common.events import CancelRequested, Event, JobState, JobStateChanged, TaskProposed, utcnow
from cirasa.common.settings import PlatformConfig
from cirasa.planner.calendar import DISPATCH_SLACK, Booking, free_at
from cirasa.planner.capacity import CapacityBook, mib
from cirasa.planner.documents import WAITING_FIELDS, Offer, Proposal, WaitingProposal
from cirasa.planner.fit import static_fit
from cirasa.planner.offers import Offers, offer_id_for, offer_made, offer_of, start_window
from cirasa.planner.proposals import Proposals
from cirasa.planner.waiting_reason import clock, waiting_reason

DRAIN_BATCH = 500  # waiting proposals looked at per drain, oldest first


NEVER_BOOKED = ("NO",)  # a proposal answered NO holds no job booking (an offer's left by a crash is mended)


class Waiting:
    def __init__(
        self,
        platforms: list[PlatformConfig],
        capacity: CapacityBook,
        proposals: Proposals,
        offers: Offers,
        log: FilteringBoundLogger,
    ) -> None:
        self._platforms = platforms
        self._capacity = capacity
        self._proposals = proposals
        self._offers = offers
        self._log = log
        self._drain_lock = asyncio.Lock()

    async def enqueue(self, doc: Proposal) -> None:
        """Queue an auto-accepted task and place it if it fits now; if not, say so at once (a PENDING
        state of ``seq`` 0 saying since when it waits), so the gateway knows the planner has it."""
        if not await self._proposals.cas(doc, state="WAITING"):
            return
        if not await self.place(doc.id):
            current = await self._proposals.docs.get(doc.id)
            if current is not None and current.state == "WAITING":
                await self.still_held(current, doc.task)

    async def place(self, pid: str) -> bool:
        """Book capacity from now for a waiting auto-accepted task, and submit it: the staging of its
        data (if any), its duration and the ``DISPATCH_SLACK``, the end of which the job is told
        (``JobSubmitted.booked_until``)."""
        doc = await self._proposals.docs.get(pid)
        if doc is None or doc.state != "WAITING":
            return False
        task = doc.task
        now = utcnow()
        start = start_window(task, now)[0]
        duration = timedelta(seconds=task.resources.duration_s)
        platforms = [p for p in self._platforms if static_fit(task, p).ok]
        for platform in sorted(platforms, key=lambda p: -p.cores):
            prep = (await self._offers.staging_time(task, platform.name)).delay  # 0 for most tasks
            found = await self._offers.candidates(
                task, platform, (start, start), alternatives=False, slack=prep + DISPATCH_SLACK
            )
            for cand in found:
                offer_id = offer_id_for(pid, platform.name)
                until = cand.start + prep + duration + DISPATCH_SLACK
                booking = Booking(
                    offer_id, cand.cores, cand.memory_mib, cand.start, until, "job", pid, user=task.user
                )
                held = await self._capacity.book(platform.name, booking)
                if held is None:
                    continue
                offer = offer_of(
                    platform, held, duration, now, "ACCEPTED", "auto-accepted", prep.total_seconds()
                )
                events: list[Event] = [
                    offer_made(self._proposals.envelope(task), task, offer),
                    self._proposals.job_submitted(task, pid, offer),
                ]
                return await self._submit(doc, events, offer)
        return False

    async def _submit(self, doc: Proposal, events: list[Event], offer: Offer) -> bool:
        """Mark the proposal PLACED with ``offer`` and its events; True when this call did. Another
        ``place`` of the same task (the drain racing a delivery) books under the same holder: when the
        proposal ends up holding ``offer`` its booking stays, else (cancelled meanwhile, or placed on
        another platform) it is freed."""
        current: Proposal | None = doc
        while current is not None and current.state == "WAITING":
            if await self._proposals.cas(current, events, state="PLACED", offers=[offer]):
                return True
            current = await self._proposals.docs.get(doc.id)
        if current is None or current.offer(offer.offer_id) is None:
            await self._capacity.release(offer.platform, {offer.offer_id})
        return False

    async def drain(self) -> None:
        """Place waiting tasks, oldest first; smaller ones may backfill behind a big one."""
        async with self._drain_lock:
            waiting = (
                self._proposals.docs.raw.find({"state": "WAITING"}, WAITING_FIELDS)
                .sort("created_at", ASCENDING)
                .limit(DRAIN_BATCH)
            )
            queue = [WaitingProposal.from_doc(raw) async for raw in waiting]
            if not queue:
                return
            free = await self._free_now()
            running = await self._running_by_user({d.task.user for d in queue})
            while queue:
                # fair share: the next task is the oldest of the user who runs the fewest jobs now
                doc = min(queue, key=lambda d: running.get(d.task.user, 0))
                queue.remove(doc)
                req = doc.task.resources
                if not any(c >= req.min_cores and m >= mib(req.min_memory_gib) for c, m in free.values()):
                    continue  # nothing has room for it now: skip without touching the database
                if await self.place(doc.id):
                    free = await self._free_now()
                    running[doc.task.user] = running.get(doc.task.user, 0) + 1

    async def _running_by_user(self, users: set[str]) -> dict[str, int]:
        """How many job bookings each of ``users`` holds now, on all platforms (their own bookings
        only are looked at, whatever the number of bookings)."""
        now, counts = utcnow(), Counter[str]()
        for name in self._capacity.platforms:
            state = await self._capacity.state(name)
            for user in users:
                counts[user] += sum(1 for b in state.jobs_of(user) if b.start <= now < b.end)
        return dict(counts)

    async def _free_now(self) -> dict[str, tuple[int, int]]:
        """Cores and memory free on each platform at this instant."""
        free: dict[str, tuple[int, int]] = {}
        for name in self._capacity.platforms:
            state = await self._capacity.state(name)
            free[name] = free_at(
                state.calendar, state.cores, state.memory_mib, utcnow(), timedelta(seconds=1)
            )
        return free

    async def job_ended(self, job_id: str) -> None:
        """Free what the job held; a placed proposal is DONE, and the waiting ones may now fit."""
        # an auto-accepted job is named by its proposal, an accepted offer's by the offer
        named = await self._proposals.docs.get(job_id)
        if named is not None and named.state in NEVER_BOOKED:
            return  # e.g. the ABORTED of a task no platform could run: nothing to free
        released = await self._capacity.release_job(job_id)
        done = {"$set": {"state": "DONE"}, "$inc": {"version": 1}}
        if named is not None:
            await self._proposals.docs.update({"_id": job_id, "state": "PLACED"}, done)
        else:
            await self._proposals.docs.update({"offers.offer_id": job_id, "state": "ACCEPTED"}, done)
        if released:
            self._log.info("capacity.released", job_id=job_id, cores=sum(b.cores for b in released))
            await self.drain()

    async def still_held(self, doc: Proposal, ev: Event) -> None:
        """Tell the gateway (when a task starts waiting, or is sent again for want of news) that the job
        is here (queued for capacity, or placed and on its way to the backend): a PENDING state of
        ``seq`` 0, which changes no job's state but keeps the gateway from giving up on it."""
        if doc.state == "WAITING":
            now = utcnow()
            status = f"{await self.reason(doc.task, now)}; queued since {clock(doc.created_at, now)}"
        else:
            status = f"Placed on platform {doc.offers[0].platform if doc.offers else '?'}; starting"
        held = JobStateChanged(
            **self._proposals.envelope(ev),
            job_id=doc.id,
            state=JobState.PENDING,
            status=status,
            seq=0,
            app=doc.task.app,
        )
        await self._proposals.cas(doc, [held])

    async def reason(self, task: TaskProposed, now: datetime) -> str:
        """What the task waits for on the platforms that could run it (see ``waiting_reason``)."""
        platforms = [p for p in self._platforms if static_fit(task, p).ok]
        states = [await self._capacity.state(p.name) for p in platforms]
        return waiting_reason(task.resources, states, now)

    async def cancel(self, ev: CancelRequested) -> None:
        """A waiting task is CANCELED here; placed jobs are cancelled by the scheduler, the rest is final."""
        doc = await self._proposals.docs.get(ev.job_id)
        if doc is None or doc.state != "WAITING":
            return
        cancelled = JobStateChanged(
            **self._proposals.envelope(ev),
            job_id=ev.job_id,
            state=JobState.CANCELED,
            status=ev.reason,
            seq=1,
            app=doc.task.app,
        )
        await self._proposals.cas(doc, [cancelled], state="CANCELED")
