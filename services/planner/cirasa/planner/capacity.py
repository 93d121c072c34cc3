"""Bookings on a platform document, changed only by compare-and-swap on its ``version``.

Each platform is one document with its totals, its bookings (see ``calendar``) and a ``version``.
A change reads the bookings, decides in Python (does the booking fit at every instant of its
interval?) and writes back only if nobody changed the document meanwhile (``version`` unchanged);
otherwise it re-reads and decides again. Any number of planner replicas can race on one platform
without over-booking it. Writes are small (``$push``/``$pull``/positional ``$set`` of one booking),
and each replica keeps the last version it saw parsed, re-reading only when the version moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cirasa.common.events import utcnow
from cirasa.common.metrics import PLATFORM_RESERVED_CORES, PLATFORM_TOTAL_CORES
from cirasa.common.settings import PlatformConfig
from cirasa.common.store import Collection
from cirasa.common.store.documents import Documents
from cirasa.planner.calendar import Booking, Calendar, fits_at
from cirasa.planner.documents import Platform

MAX_RETRIES = 50


def mib(gib: float) -> int:
    return round(gib * 1024)


class ContentionError(RuntimeError):
    """Too many concurrent writers on one platform document; the caller's event will be retried."""


@dataclass
class PlatformState:
    name: str
    cores: int
    memory_mib: int
    version: int
    bookings: list[Booking]
    _calendar: Calendar | None = field(default=None, repr=False)

    @property
    def calendar(self) -> Calendar:
        if self._calendar is None:
            self._calendar = Calendar(self.bookings)
        return self._calendar


Write = tuple[dict[str, Any], list[Booking]]  # the update to apply, and the bookings after it
Decide = Callable[[PlatformState], Write | None]


class CapacityBook:
    def __init__(self, collection: Collection, platforms: list[PlatformConfig]) -> None:
        self._docs = Documents(collection, Platform)
        self.platforms = {p.name: p for p in platforms}
        self._seen: dict[str, PlatformState] = {}

    async def sync_platforms(self) -> None:
        """Create missing platform documents and refresh totals from configuration."""
        for p in self.platforms.values():
            await self._docs.raw.update_one(
                {"_id": p.name},
                {
                    "$set": {"cores": p.cores, "memory_mib": mib(p.memory_gib)},
                    "$setOnInsert": {"bookings": []},
                    "$inc": {"version": 1},  # totals may have changed: every replica re-reads
                },
                upsert=True,
            )
            PLATFORM_TOTAL_CORES.labels(p.name).set(p.cores)

    async def state(self, platform: str) -> PlatformState:
        """The platform as stored now; the parsed copy is reused while the version has not moved."""
        seen = self._seen.get(platform)
        query: dict[str, Any] = {"_id": platform}
        if seen is not None:
            query["version"] = {"$ne": seen.version}
        doc = await self._docs.find_one(query)
        if doc is None:
            if seen is None:
                raise KeyError(platform)
            return seen
        state = PlatformState(platform, doc.cores, doc.memory_mib, doc.version, doc.bookings)
        self._seen[platform] = state
        return state

    async def _change(self, platform: str, decide: Decide, where: dict[str, Any] | None = None) -> bool:
        for _ in range(MAX_RETRIES):
            state = await self.state(platform)
            write = decide(state)
            if write is None:
                return False
            update, after = write
            update.setdefault("$inc", {})["version"] = 1
            if await self._docs.update({"_id": platform, "version": state.version, **(where or {})}, update):
                self._seen[platform] = PlatformState(
                    platform, state.cores, state.memory_mib, state.version + 1, after
                )
                PLATFORM_RESERVED_CORES.labels(platform).set(_cores_now(after))
                return True
        raise ContentionError(f"platform {platform}: gave up after {MAX_RETRIES} concurrent updates")

    async def book(self, platform: str, booking: Booking) -> bool:
        """Add ``booking`` if it fits at every instant of its interval and, for an offer, within its
        user's share of the platform (see :meth:`offer_room`); idempotent per holder."""
        held = False

        def decide(state: PlatformState) -> Write | None:
            nonlocal held
            held = any(b.holder == booking.holder for b in state.bookings)
            if held or not fits_at(state.calendar, state.cores, state.memory_mib, booking):
                return None
            if booking.kind == "offer" and booking.user is not None:
                cores, memory_mib = self.offer_room(state, booking.user, booking.start, booking.end)
                if booking.cores > cores or booking.memory_mib > memory_mib:
                    return None
            return {"$push": {"bookings": booking.to_doc()}}, [*state.bookings, booking]

        return await self._change(platform, decide) or held

    def offer_room(self, state: PlatformState, user: str, start: datetime, end: datetime) -> tuple[int, int]:
        """Cores and memory ``user`` may still hold in unaccepted offers over ``[start, end)`` on the
        platform: its ``offer_share`` of the totals, less what the user's offers overlapping that
        interval hold, so one user's offers never stall everyone else's work."""
        share = self.platforms[state.name].offer_share
        mine = [
            b
            for b in state.bookings
            if b.kind == "offer" and b.user == user and b.start < end and start < b.end
        ]
        cores = math.ceil(share * state.cores) - sum(b.cores for b in mine)
        memory_mib = math.ceil(share * state.memory_mib) - sum(b.memory_mib for b in mine)
        return cores, memory_mib

    async def release(self, platform: str, holders: set[str]) -> list[Booking]:
        """Remove the bookings of ``holders``; returns those removed."""
        removed: list[Booking] = []

        def decide(state: PlatformState) -> Write | None:
            removed[:] = [b for b in state.bookings if b.holder in holders]
            if not removed:
                return None
            update = {"$pull": {"bookings": {"holder": {"$in": sorted(holders)}}}}
            return update, [b for b in state.bookings if b.holder not in holders]

        return removed if await self._change(platform, decide) else []

    async def release_job(self, job_id: str) -> list[Booking]:
        """Remove every booking of a job, on whichever platform; a no-op when there is none. An accepted
        offer names its job, so its booking goes too even if it was never confirmed as the job's
        (a crash between the accept and the confirm; found by the simulation)."""
        removed: list[Booking] = []
        for name in self.platforms:
            bookings = (await self.state(name)).bookings
            holders = {b.holder for b in bookings if job_id in (b.job_id, b.holder)}
            if holders:
                removed += await self.release(name, holders)
        return removed

    async def confirm(
        self, platform: str, holder: str, job_id: str, within: tuple[datetime, datetime] | None = None
    ) -> bool:
        """Turn an offer's booking into a job's: it no longer expires, and it shrinks to ``within`` (the
        job's interval; clipped to what was booked, so it always fits), the rest going back to others."""
        done = False

        def decide(state: PlatformState) -> Write | None:
            nonlocal done
            mine = [b for b in state.bookings if b.holder == holder]
            done = bool(mine) and mine[0].kind == "job"
            if not mine or done:
                return None
            b = mine[0]
            start, end = (max(b.start, within[0]), min(b.end, within[1])) if within else (b.start, b.end)
            end = max(start, end)  # an interval outside the booking leaves it empty, never negative
            job = Booking(b.holder, b.cores, b.memory_mib, start, end, "job", job_id, None, b.user)
            update = {"$set": {"bookings.$": job.to_doc()}}  # the element matched by holder
            return update, [job if x.holder == holder else x for x in state.bookings]

        return await self._change(platform, decide, where={"bookings.holder": holder}) or done

    async def restore(self, platform: str, bookings: list[Booking]) -> list[Booking]:
        """Add those of ``bookings`` the platform does not hold (by holder); returns them. No fit
        check: they stand for work already placed, which holds the capacity whatever we recorded."""
        added: list[Booking] = []

        def decide(state: PlatformState) -> Write | None:
            held = {b.holder for b in state.bookings}
            added[:] = [b for b in bookings if b.holder not in held]
            if not added:
                return None
            update = {"$push": {"bookings": {"$each": [b.to_doc() for b in added]}}}
            return update, [*state.bookings, *added]

        return added if await self._change(platform, decide) else []

    async def set_external(self, platform: str, booking: Booking) -> None:
        """Replace the booking that stands for work the backend runs for others (no fit check: it is
        what the cluster reports, not something we may refuse)."""

        def decide(state: PlatformState) -> Write | None:
            others = [b for b in state.bookings if b.holder != booking.holder]
            update = {"$set": {"bookings": [b.to_doc() for b in [*others, booking]]}}
            return update, [*others, booking]

        await self._change(platform, decide)


def _cores_now(bookings: list[Booking]) -> int:
    now = utcnow()
    return sum(b.cores for b in bookings if b.start <= now < b.end)
