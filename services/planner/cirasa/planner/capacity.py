"""Bookings on a platform document, changed only by compare-and-swap on its ``version``.

Each platform is one document with its totals and its bookings (see ``calendar``). A change reads
the document, decides in Python (does the booking fit at every instant of its interval?) and writes
back only if nobody changed the document meanwhile (``version`` unchanged); otherwise it re-reads and
decides again. Any number of planner replicas can race on one platform without over-booking it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cirasa.common.events import utcnow
from cirasa.common.metrics import PLATFORM_RESERVED_CORES, PLATFORM_TOTAL_CORES
from cirasa.common.settings import PlatformConfig
from cirasa.common.store import Collection
from cirasa.planner.calendar import Booking, fits_at

MAX_RETRIES = 50


def mib(gib: float) -> int:
    return round(gib * 1024)


class ContentionError(RuntimeError):
    """Too many concurrent writers on one platform document; the caller's event will be retried."""


@dataclass(frozen=True)
class PlatformState:
    name: str
    cores: int
    memory_mib: int
    version: int
    bookings: list[Booking]


Change = Callable[[PlatformState], list[Booking] | None]  # the new bookings, or None for "no change"


class CapacityBook:
    def __init__(self, collection: Collection, platforms: list[PlatformConfig]) -> None:
        self._coll = collection
        self.platforms = {p.name: p for p in platforms}

    async def sync_platforms(self) -> None:
        """Create missing platform documents and refresh totals from configuration."""
        for p in self.platforms.values():
            await self._coll.update_one(
                {"_id": p.name},
                {
                    "$set": {"cores": p.cores, "memory_mib": mib(p.memory_gib)},
                    "$setOnInsert": {"bookings": [], "version": 0},
                },
                upsert=True,
            )
            PLATFORM_TOTAL_CORES.labels(p.name).set(p.cores)

    async def state(self, platform: str) -> PlatformState:
        doc = await self._coll.find_one({"_id": platform})
        if doc is None:
            raise KeyError(platform)
        return PlatformState(
            platform,
            doc["cores"],
            doc["memory_mib"],
            doc["version"],
            [Booking.from_doc(b) for b in doc.get("bookings", [])],
        )

    async def change(self, platform: str, decide: Change) -> list[Booking] | None:
        """Apply ``decide`` to the platform's bookings atomically; returns the bookings written, or None."""
        for _ in range(MAX_RETRIES):
            state = await self.state(platform)
            new = decide(state)
            if new is None:
                return None
            result = await self._coll.update_one(
                {"_id": platform, "version": state.version},
                {"$set": {"bookings": [b.to_doc() for b in new]}, "$inc": {"version": 1}},
            )
            if result.modified_count == 1:
                PLATFORM_RESERVED_CORES.labels(platform).set(_cores_now(new))
                return new
        raise ContentionError(f"platform {platform}: gave up after {MAX_RETRIES} concurrent updates")

    async def book(self, platform: str, booking: Booking) -> bool:
        """Add ``booking`` if it fits at every instant; idempotent per holder."""

        def decide(state: PlatformState) -> list[Booking] | None:
            if any(b.holder == booking.holder for b in state.bookings):
                return None
            if not fits_at(state.bookings, state.cores, state.memory_mib, booking):
                return None
            return [*state.bookings, booking]

        if await self.change(platform, decide) is not None:
            return True
        state = await self.state(platform)
        return any(b.holder == booking.holder for b in state.bookings)

    async def release(self, platform: str, holders: set[str]) -> list[Booking]:
        """Remove the bookings of ``holders``; returns those removed."""
        removed: list[Booking] = []

        def decide(state: PlatformState) -> list[Booking] | None:
            removed.clear()
            removed.extend(b for b in state.bookings if b.holder in holders)
            return [b for b in state.bookings if b.holder not in holders] if removed else None

        await self.change(platform, decide)
        return removed

    async def release_job(self, job_id: str) -> list[Booking]:
        """Remove every booking of a job, on whichever platform; a no-op when there is none."""
        removed: list[Booking] = []
        async for doc in self._coll.find({"bookings.job_id": job_id}, {"_id": 1}):
            holders = {b.holder for b in (await self.state(doc["_id"])).bookings if b.job_id == job_id}
            removed += await self.release(doc["_id"], holders)
        return removed

    async def confirm(self, platform: str, holder: str, job_id: str) -> bool:
        """Turn an offer's booking into a job's: it no longer expires."""

        def decide(state: PlatformState) -> list[Booking] | None:
            out, found = [], False
            for b in state.bookings:
                if b.holder == holder and b.kind == "offer":
                    found = True
                    b = Booking(b.holder, b.cores, b.memory_mib, b.start, b.end, "job", job_id, None)
                out.append(b)
            return out if found else None

        if await self.change(platform, decide) is not None:
            return True
        return any(b.holder == holder and b.kind == "job" for b in (await self.state(platform)).bookings)

    async def snapshot(self) -> list[dict[str, Any]]:
        return [doc async for doc in self._coll.find({})]


def _cores_now(bookings: list[Booking]) -> int:
    now = utcnow()
    return sum(b.cores for b in bookings if b.start <= now < b.end)
