"""A platform's bookings in the store: a small platform document that is the compare-and-swap ticket,
and one document per booking.

* ``platforms``: ``{_id, cores, memory_mib, version, last}``. A change of the platform's bookings is
  committed by ONE conditional write of this document: ``version`` ``v - 1`` becomes ``v`` and ``last``
  becomes the change (the bookings added, replaced and removed). Two planners racing on a platform
  cannot both commit version ``v``; the loser reads what changed and decides again.
* ``bookings``: one document per booking (``_id`` its holder), indexed by platform and time, written
  after the commit that made it (a removed booking stays as a tombstone for ``TOMBSTONE_TTL``).

Invariant: every change before ``last`` is already in the bookings collection. A writer keeps it by
writing its own change there right after its commit, and by writing the change before its own (when
it is somebody else's, who may have crashed before writing it) before committing. So a planner that is
one version behind applies ``last`` and is current (the usual case: one read of a small document); one
further behind reads the bookings of the platform and applies ``last``.

Writes to a booking document are guarded by version (``v``), so a late write of an older change never
undoes a newer one.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from cirasa.common.events import utcnow
from cirasa.common.store import Collection, Database
from cirasa.common.store.documents import Documents
from cirasa.planner.calendar import Booking
from cirasa.planner.documents import BOOKINGS, PLATFORMS, BookingChange, Platform, StoredBooking
from cirasa.planner.platform_state import PlatformState

TOMBSTONE_TTL = timedelta(hours=1)  # a removed booking's document is deleted this long after


class Ledger:
    def __init__(self, db: Database) -> None:
        self.platforms = Documents(db[PLATFORMS], Platform)
        self.bookings: Collection = db[BOOKINGS]

    async def ensure(self, name: str) -> None:
        """The platform's document exists (version 0, no bookings, no totals yet)."""
        await self.platforms.raw.update_one(
            {"_id": name}, {"$setOnInsert": {"cores": 0, "memory_mib": 0, "version": 0}}, upsert=True
        )
        await self._migrate(name)

    async def load(self, name: str) -> PlatformState | None:
        """The platform as stored now (None: no such platform)."""
        doc = await self.platforms.get(name)
        if doc is None:
            return None
        # read after the platform document: every change before its ``last`` is in what we read now
        cursor = self.bookings.find({"platform": name, "removed": False})
        held = [StoredBooking.from_doc(raw).booking() async for raw in cursor]
        last = doc.last if doc.last is not None and doc.last.v == doc.version else None
        state = PlatformState(name, doc.cores, doc.memory_mib, doc.version - (last is not None), held)
        if last is not None:
            state.apply(last)  # it may be in the bookings already: applying it again changes nothing
            state.materialised = last.v - 1
        return state

    async def sync(self, state: PlatformState) -> PlatformState | None:
        """``state`` brought to the platform's current version (itself, or a fresh load)."""
        doc = await self.platforms.find_one({"_id": state.name, "version": {"$ne": state.version}})
        if doc is None or doc.version <= state.version:
            return state  # unchanged, or caught up meanwhile (by our own commits)
        if doc.last is not None and doc.last.v == doc.version == state.version + 1:
            state.apply(doc.last)
            return state
        return await self.load(state.name)

    async def commit(self, state: PlatformState, change: BookingChange) -> bool:
        """Commit ``change`` as version ``change.v`` (decided on ``state`` at version ``change.v - 1``);
        False when another writer got there first. On success ``state`` has it applied."""
        last = state.last
        if last is not None and state.materialised < last.v:
            await self.write(state.name, last)  # the invariant: all before ``last`` is stored
            state.materialised = max(state.materialised, last.v)
        update: dict[str, Any] = {"version": change.v, "last": change.model_dump()}
        if change.totals is not None:
            update["cores"], update["memory_mib"] = change.totals
        base = change.v - 1  # the version the change was decided on
        result = await self.platforms.raw.update_one({"_id": state.name, "version": base}, {"$set": update})
        if result.modified_count != 1:
            return False
        if state.version < change.v:  # a sync meanwhile may have applied it already
            state.apply(change)
        await self.write(state.name, change)
        state.materialised = max(state.materialised, change.v)
        return True

    async def write(self, platform: str, change: BookingChange) -> None:
        """Write ``change`` to the booking documents (idempotent; never over a newer version)."""
        now = utcnow()
        for holder in change.drop:
            await self._guarded(holder, change.v, {"platform": platform, "removed": True, "removed_at": now})
        for b in change.put:
            doc = b.to_doc()
            del doc["holder"]
            await self._guarded(b.holder, change.v, {**doc, "platform": platform, "removed": False})

    async def collect_garbage(self) -> int:
        """Delete the tombstones of bookings removed more than ``TOMBSTONE_TTL`` ago."""
        result = await self.bookings.delete_many(
            {"removed": True, "removed_at": {"$lt": utcnow() - TOMBSTONE_TTL}}
        )
        return int(result.deleted_count)

    async def _guarded(self, holder: str, v: int, fields: dict[str, Any]) -> None:
        with contextlib.suppress(DuplicateKeyError):  # it is at version ``v`` or a newer one already
            await self.bookings.update_one(
                {"_id": holder, "v": {"$lt": v}}, {"$set": {**fields, "v": v}}, upsert=True
            )

    async def _migrate(self, name: str) -> None:
        """Move the bookings of a platform document written by an earlier release (one array of every
        booking) to booking documents."""
        raw = await self.platforms.raw.find_one({"_id": name, "bookings": {"$exists": True}})
        if raw is None:
            return
        v = int(raw.get("version", 0))
        change = BookingChange(v=v, put=[Booking.from_doc(b) for b in raw["bookings"]])
        await self.write(name, change)
        await self.platforms.raw.update_one(
            {"_id": name, "version": v}, {"$unset": {"bookings": ""}, "$set": {"last": None}}
        )


async def stored_bookings(db: Database, platform: str) -> list[Booking]:
    """What the store holds booked on ``platform`` now, as a planner starting afresh would read it
    (tests, the simulation's invariants and operators' tools read it here)."""
    state = await Ledger(db).load(platform)
    return state.bookings if state is not None else []
