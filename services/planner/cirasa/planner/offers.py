"""Offers: where and when a task fits, booking what is offered, and the answer (offers, or a NO).

Every offer books what it offers until it is accepted, rejected or expired: over its interval, and on
for as long as it may still be accepted (its time to live) and the ``DISPATCH_SLACK``, so the job runs
inside the booking even when accepted late (see ``documents.Offer``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cirasa.common.events import (
    Event,
    JobState,
    JobStateChanged,
    OfferMade,
    OfferPhase,
    TaskProposed,
    as_utc,
    utcnow,
)
from cirasa.common.settings import PlatformConfig
from cirasa.planner.calendar import DISPATCH_SLACK, Booking, free_at
from cirasa.planner.capacity import CapacityBook, mib
from cirasa.planner.documents import Offer, Proposal
from cirasa.planner.fit import Fit, no_reasons_summary
from cirasa.planner.proposals import Envelope, Proposals
from cirasa.planner.staging import StagingEstimate

DEFAULT_WINDOW = timedelta(hours=2)
MAX_WINDOW = timedelta(days=30)
SEARCH_STALENESS_S = 0.05  # an offer's search may use the calendar as read this long ago (see book)

StartDelay = Callable[[str], Awaitable[timedelta]]  # how late jobs tend to start on a platform
StagingTime = Callable[[TaskProposed, str], Awaitable[StagingEstimate]]  # a task's data on a platform


class OfferShareExceeded(Exception):
    """The user's unaccepted offers already hold their share of a platform."""


def offer_id_for(proposal_id: str, platform: str, variant: int = 0) -> str:
    """Deterministic, so a redelivered proposal books the same offers again (a no-op)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cirasa:offer:{proposal_id}:{platform}:{variant}").hex


@dataclass(frozen=True)
class Candidate:
    platform: PlatformConfig
    start: datetime
    cores: int
    memory_mib: int
    description: str


def offer_of(
    platform: PlatformConfig,
    booked: Booking,
    run: timedelta,
    expires: datetime,
    state: OfferPhase,
    description: str,
    staging_s: float = 0.0,
) -> Offer:
    """The offer ``booked`` stands for: its data is staged for ``staging_s`` from the booking's start,
    then the job runs ``run`` (never past the booking's end), and the booking holds until its end.
    Made from what is booked, not from the search that led there: a redelivery or a retry finds the
    holder's earlier booking (see ``CapacityBook.book``)."""
    return Offer(
        offer_id=booked.holder,
        platform=platform.name,
        backend=platform.backend,
        cores=booked.cores,
        memory_mib=booked.memory_mib,
        start=booked.start + timedelta(seconds=staging_s),
        end=min(booked.start + timedelta(seconds=staging_s) + run, booked.end),
        expires_at=expires,
        state=state,
        description=description,
        booked_until=booked.end,
        staging_s=staging_s,
    )


def offer_made(
    env: Envelope, task: TaskProposed, offer: Offer, set_size: int = 1, description: str = ""
) -> OfferMade:
    duration_s = task.resources.duration_s
    return OfferMade(
        **env,
        offer_id=offer.offer_id,
        platform=offer.platform,
        accepted=True,
        resources=offer.resources(duration_s),
        start=offer.start,
        expires_at=offer.expires_at,
        cost_core_hours=round(offer.cores * duration_s / 3600, 4),
        set_size=set_size,
        description=description,
        staging_s=offer.staging_s,
    )


def start_window(task: TaskProposed, now: datetime) -> tuple[datetime, datetime]:
    """When the task may start: its own bounds, else the next ``DEFAULT_WINDOW``; within ``MAX_WINDOW``."""
    start = max(now, as_utc(task.start_after)) if task.start_after else now
    end = as_utc(task.start_before) if task.start_before else start + DEFAULT_WINDOW
    return start, min(end, now + MAX_WINDOW)


class Offers:
    def __init__(
        self,
        capacity: CapacityBook,
        proposals: Proposals,
        start_delay: StartDelay,
        staging_time: StagingTime,
    ) -> None:
        self._capacity = capacity
        self._proposals = proposals
        self._start_delay = start_delay
        self.staging_time = staging_time

    async def candidates(
        self,
        task: TaskProposed,
        platform: PlatformConfig,
        window: tuple[datetime, datetime],
        alternatives: bool,
        slack: timedelta = timedelta(0),
    ) -> list[Candidate]:
        """The earliest start with as much as fits there; then, if that is less than asked, more cores
        later. ``slack`` is how much longer than the task's duration the booking will be."""
        state = await self._capacity.state(platform.name, max_age_s=SEARCH_STALENESS_S)
        req, duration = task.resources, timedelta(seconds=task.resources.duration_s) + slack
        min_mib, max_mib = mib(req.min_memory_gib), mib(req.max_memory_gib)
        start = state.calendar.earliest_start(
            state.cores, state.memory_mib, req.min_cores, min_mib, duration, *window
        )
        if start is None:
            return []
        free_c, free_m = free_at(state.calendar, state.cores, state.memory_mib, start, duration)
        first = Candidate(platform, start, min(req.max_cores, free_c), min(max_mib, free_m), "earliest start")
        out = [first]
        if alternatives and first.cores < req.max_cores:
            later = state.calendar.earliest_start(
                state.cores, state.memory_mib, req.max_cores, min_mib, duration, *window
            )
            if later is not None and later != start:
                _, free_m2 = free_at(state.calendar, state.cores, state.memory_mib, later, duration)
                out.append(
                    Candidate(platform, later, req.max_cores, min(max_mib, free_m2), "more cores, later")
                )
        return out

    async def make(self, doc: Proposal, task: TaskProposed, platforms: list[PlatformConfig]) -> None:
        """Book and offer, on every platform, the candidates found in the task's window; NO if none."""
        now = utcnow()
        span = start_window(task, now)
        if span[1] < span[0]:
            await self.say_no(doc, task, ["the requested start window has already passed"], "window passed")
            return
        offers: list[Offer] = []
        reasons: list[str] = []
        for platform in platforms:
            try:
                found = await self._book_on(doc.id, task, platform, span, now)
            except OfferShareExceeded as exc:
                reasons.append(str(exc))
                continue
            if isinstance(found, str):
                reasons.append(found)
            else:
                offers += found
        if not offers:
            await self.say_no(doc, task, reasons, "No platform has room in the requested window")
            return
        env = self._proposals.envelope(task)
        events: list[Event] = [offer_made(env, task, o, len(offers), o.description) for o in offers]
        # when another delivery got there first, our bookings are its bookings (same holders)
        await self._proposals.cas(doc, events, state="OFFERED", offers=offers)

    async def _book_on(
        self,
        pid: str,
        task: TaskProposed,
        platform: PlatformConfig,
        span: tuple[datetime, datetime],
        now: datetime,
    ) -> list[Offer] | str:
        """The offers booked on ``platform``, or why there is no slot in the window at all. A task
        with data starts after staging it (``planner.staging``)."""
        delay = await self._start_delay(platform.name)  # jobs here tend to start this late
        staging = await self.staging_time(task, platform.name)
        prep = staging.delay  # the data is staged first, inside the booking
        duration = timedelta(seconds=task.resources.duration_s)
        ttl = timedelta(seconds=platform.offer_ttl_s)
        # accepted by ``expires`` (<= start + ttl), the job is staged and runs inside [start, start + held)
        held = prep + duration + delay + ttl + DISPATCH_SLACK
        found = await self.candidates(task, platform, span, alternatives=True, slack=held - duration)
        if not found:
            return (
                f"{platform.name}: no free slot of {task.resources.min_cores} cores and "
                f"{task.resources.min_memory_gib:g} GiB for {task.resources.duration_s} s "
                f"starting between {span[0].isoformat()} and {span[1].isoformat()}"
                + (f" ({staging.describe()})" if staging.fetched else "")
            )
        found = await self._within_share(task, platform, found, held)
        expires = now + ttl
        note = f"; jobs here start {delay.total_seconds():g} s late on average" if delay else ""
        note += f"; {staging.describe()}" if task.staging else ""
        offers: list[Offer] = []
        for variant, cand in enumerate(found):
            offer_id = offer_id_for(pid, platform.name, variant)
            booking = Booking(
                offer_id,
                cand.cores,
                cand.memory_mib,
                cand.start,
                cand.start + held,
                "offer",
                None,
                expires,
                task.user,
            )
            b = await self._capacity.book(platform.name, booking)  # or what an earlier delivery booked
            if b is not None:
                run, expiry = duration + delay, b.expires_at or expires
                offers.append(
                    offer_of(
                        platform, b, run, expiry, "OFFERED", cand.description + note, prep.total_seconds()
                    )
                )
        return offers

    async def _within_share(
        self, task: TaskProposed, platform: PlatformConfig, found: list[Candidate], held: timedelta
    ) -> list[Candidate]:
        """The candidates cut to what the user's share of the platform leaves room for over the ``held``
        their bookings will last."""
        state = self._capacity.seen(platform.name)  # as ``candidates`` just read it
        kept: list[Candidate] = []
        room = (0, 0)
        for cand in found:
            room = self._capacity.offer_room(state, task.user, cand.start, cand.start + held)
            if room[0] >= task.resources.min_cores and room[1] >= mib(task.resources.min_memory_gib):
                kept.append(
                    replace(cand, cores=min(cand.cores, room[0]), memory_mib=min(cand.memory_mib, room[1]))
                )
        if found and not kept:
            raise OfferShareExceeded(
                f"{platform.name}: one user's unaccepted offers may hold at most "
                f"{platform.offer_share:.0%} of its {platform.cores} cores and "
                f"{platform.memory_gib:g} GiB; yours leave room for {max(room[0], 0)} cores and "
                f"{max(room[1], 0) / 1024:g} GiB: accept or reject your other offers, or ask for less"
            )
        return kept

    async def say_no(self, doc: Proposal, ev: TaskProposed, reasons: list[str], summary: str) -> None:
        """Answer NO with ``reasons``; an auto-accepted task's job ends ABORTED with ``summary``."""
        await self._proposals.cas(doc, self._no(doc.id, ev, reasons, summary), state="NO", reasons=reasons)

    async def refuse_unfit(self, ev: TaskProposed, fits: list[Fit]) -> Proposal | None:
        """NO because no platform could ever run the task, said in the write that stores the proposal;
        a redelivery gets the stored proposal back instead (None: answered now)."""
        summary = no_reasons_summary(ev, fits)
        reasons = [r for f in fits for r in f.reasons] or [summary]
        events = self._no(ev.correlation_id, ev, reasons, summary)
        return await self._proposals.open_refused(ev, events, reasons)

    def _no(self, proposal_id: str, ev: TaskProposed, reasons: list[str], summary: str) -> list[Event]:
        env = self._proposals.envelope(ev)
        events: list[Event] = [
            OfferMade(**env, offer_id=offer_id_for(proposal_id, "none"), accepted=False, reasons=reasons)
        ]
        if ev.auto_accept:
            events.append(
                JobStateChanged(
                    **env, job_id=proposal_id, state=JobState.ABORTED, status=summary, seq=1, app=ev.app
                )
            )
        return events

    async def say_no_fit(self, doc: Proposal, ev: TaskProposed, fits: list[Fit]) -> None:
        """NO because no platform could ever run the task."""
        summary = no_reasons_summary(ev, fits)
        await self.say_no(doc, ev, [r for f in fits for r in f.reasons] or [summary], summary)
