"""Bookings on a platform, changed only by compare-and-swap on its version (see ``ledger``).

A change reads the platform as this replica last saw it, decides in Python (does the booking fit at
every instant of its interval?) and commits only if nobody changed the platform meanwhile; otherwise
it catches up with what changed and decides again. Any number of planner replicas can race on one
platform without over-booking it. Each replica keeps the platform's bookings in memory, indexed
(``PlatformState``), and catches up by applying the changes others committed, so an offer costs the
same at 10,000 live bookings as at 100.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime

from cirasa.common.events import utcnow
from cirasa.common.metrics import PLATFORM_RESERVED_CORES, PLATFORM_TOTAL_CORES
from cirasa.common.settings import PlatformConfig
from cirasa.common.store import Database
from cirasa.planner.calendar import Booking, fits_at
from cirasa.planner.documents import BookingChange
from cirasa.planner.ledger import Ledger
from cirasa.planner.platform_state import PlatformState

MAX_RETRIES = 50


def mib(gib: float) -> int:
    return round(gib * 1024)


class ContentionError(RuntimeError):
    """Too many concurrent writers on one platform document; the caller's event will be retried."""


Decide = Callable[[PlatformState], BookingChange | None]  # the change to commit (its ``v`` is set later)


class CapacityBook:
    def __init__(self, db: Database, platforms: list[PlatformConfig]) -> None:
        self.ledger = Ledger(db)
        self.platforms = {p.name: p for p in platforms}
        self._seen: dict[str, PlatformState] = {}
        self._read_at: dict[str, float] = {}  # when each platform was last read (event loop time)

    async def sync_platforms(self) -> None:
        """Create missing platform documents and commit the totals configuration gives them."""
        for p in self.platforms.values():
            await self.ledger.ensure(p.name)
            totals = (p.cores, mib(p.memory_gib))

            def decide(state: PlatformState, totals: tuple[int, int] = totals) -> BookingChange | None:
                same = (state.cores, state.memory_mib) == totals
                return None if same else BookingChange(v=0, totals=totals)

            await self._change(p.name, decide)
            PLATFORM_TOTAL_CORES.labels(p.name).set(p.cores)

    async def state(self, platform: str, max_age_s: float = 0.0) -> PlatformState:
        """The platform as stored now, kept in memory and brought up to date with what changed; or as
        read at most ``max_age_s`` ago (a search may start from that: the booking it leads to is
        decided again on the stored state by compare-and-swap)."""
        seen = self._seen.get(platform)
        now = asyncio.get_running_loop().time()
        if seen is not None and now - self._read_at.get(platform, -math.inf) <= max_age_s:
            return seen
        state = await (self.ledger.load(platform) if seen is None else self.ledger.sync(seen))
        if state is None:
            raise KeyError(platform)
        self._seen[platform], self._read_at[platform] = state, now
        return state

    def seen(self, platform: str) -> PlatformState:
        """The platform as this replica last read it (no store access; it must have been read)."""
        return self._seen[platform]

    async def _change(self, platform: str, decide: Decide) -> bool:
        state = self._seen.get(platform) or await self.state(platform)  # a stale one only loses the race
        for _ in range(MAX_RETRIES):
            change = decide(state)
            if change is None:
                return False
            change.v = state.version + 1
            if await self.ledger.commit(state, change):
                PLATFORM_RESERVED_CORES.labels(platform).set(state.cores_at(utcnow()))
                return True
            state = await self.state(platform)
        raise ContentionError(f"platform {platform}: gave up after {MAX_RETRIES} concurrent updates")

    async def book(self, platform: str, booking: Booking) -> Booking | None:
        """Add ``booking`` if it fits at every instant of its interval and, for an offer, within its
        user's share of the platform (see :meth:`offer_room`). Returns what its holder has booked now:
        ``booking``, or the one an earlier call booked for the holder (a redelivery, a retry after a
        crash: what is offered must then be that one, not what a new search found), or None."""
        held: Booking | None = None

        def decide(state: PlatformState) -> BookingChange | None:
            nonlocal held
            held = state.held.get(booking.holder)
            if held or not fits_at(state.calendar, state.cores, state.memory_mib, booking):
                return None
            if booking.kind == "offer" and booking.user is not None:
                cores, memory_mib = self.offer_room(state, booking.user, booking.start, booking.end)
                if booking.cores > cores or booking.memory_mib > memory_mib:
                    return None
            return BookingChange(v=0, put=[booking])

        return booking if await self._change(platform, decide) else held

    def offer_room(self, state: PlatformState, user: str, start: datetime, end: datetime) -> tuple[int, int]:
        """Cores and memory ``user`` may still hold in unaccepted offers over ``[start, end)`` on the
        platform: its ``offer_share`` of the totals, less the most the user's offers hold at any
        instant of that interval, so one user's offers never stall everyone else's work."""
        share = self.platforms[state.name].offer_share
        held_cores, held_mib = state.offered_peak(user, start, end)
        return math.ceil(share * state.cores) - held_cores, math.ceil(share * state.memory_mib) - held_mib

    async def release(self, platform: str, holders: set[str]) -> list[Booking]:
        """Remove the bookings of ``holders``; returns those removed."""
        removed: list[Booking] = []

        def decide(state: PlatformState) -> BookingChange | None:
            removed[:] = [state.held[h] for h in sorted(holders) if h in state.held]
            return BookingChange(v=0, drop=[b.holder for b in removed]) if removed else None

        return removed if await self._change(platform, decide) else []

    async def release_job(self, job_id: str) -> list[Booking]:
        """Remove every booking of a job, on whichever platform; a no-op when there is none. An accepted
        offer names its job, so its booking goes too even if it was never confirmed as the job's
        (a crash between the accept and the confirm; found by the simulation)."""
        removed: list[Booking] = []
        for name in self.platforms:
            holders = (await self.state(name)).holders_of_job(job_id)
            if holders:
                removed += await self.release(name, holders)
        return removed

    async def confirm(
        self, platform: str, holder: str, job_id: str, within: tuple[datetime, datetime] | None = None
    ) -> bool:
        """Turn an offer's booking into a job's: it no longer expires, and it shrinks to ``within`` (the
        job's interval; clipped to what was booked, so it always fits), the rest going back to others."""
        done = False

        def decide(state: PlatformState) -> BookingChange | None:
            nonlocal done
            b = state.held.get(holder)
            done = b is not None and b.kind == "job"
            if b is None or done:
                return None
            start, end = (max(b.start, within[0]), min(b.end, within[1])) if within else (b.start, b.end)
            end = max(start, end)  # an interval outside the booking leaves it empty, never negative
            job = Booking(b.holder, b.cores, b.memory_mib, start, end, "job", job_id, None, b.user)
            return BookingChange(v=0, put=[job])

        return await self._change(platform, decide) or done

    async def restore(self, platform: str, bookings: list[Booking]) -> list[Booking]:
        """Add those of ``bookings`` the platform does not hold (by holder); returns them. No fit
        check: they stand for work already placed, which holds the capacity whatever we recorded."""
        added: list[Booking] = []

        def decide(state: PlatformState) -> BookingChange | None:
            added[:] = [b for b in bookings if b.holder not in state.held]
            return BookingChange(v=0, put=list(added)) if added else None

        return added if await self._change(platform, decide) else []

    async def set_external(self, platform: str, booking: Booking) -> None:
        """Replace the booking that stands for work the backend runs for others (no fit check: it is
        what the cluster reports, not something we may refuse)."""
        await self._change(platform, lambda state: BookingChange(v=0, put=[booking]))
