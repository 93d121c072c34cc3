"""Atomic capacity reservations on a platform document.

Each platform is one document holding its totals, what is used, and the list of reservations by
holder (a job id). Reserving and releasing are single conditional updates, so any number of
planner replicas can race without over-booking: the update matches only while the platform has
room AND does not already hold a reservation for that holder, which also makes both idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument

from cirasa.common.events import utcnow
from cirasa.common.metrics import PLATFORM_RESERVED_CORES, PLATFORM_TOTAL_CORES
from cirasa.common.settings import PlatformConfig
from cirasa.common.store import Collection


def mib(gib: float) -> int:
    return round(gib * 1024)


@dataclass(frozen=True)
class Reservation:
    platform: str
    holder: str
    cores: int
    memory_mib: int


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
                    "$setOnInsert": {"reservations": [], "used_cores": 0, "used_memory_mib": 0},
                },
                upsert=True,
            )
            PLATFORM_TOTAL_CORES.labels(p.name).set(p.cores)

    async def free(self, platform: str) -> tuple[int, int]:
        doc = await self._coll.find_one({"_id": platform})
        if doc is None:
            return 0, 0
        return doc["cores"] - doc["used_cores"], doc["memory_mib"] - doc["used_memory_mib"]

    async def held_by(self, holder: str, platform: str | None = None) -> Reservation | None:
        query: dict[str, Any] = {"reservations.holder": holder}
        if platform is not None:
            query["_id"] = platform
        doc = await self._coll.find_one(query, {"reservations": {"$elemMatch": {"holder": holder}}})
        if doc is None:
            return None
        r = doc["reservations"][0]
        return Reservation(doc["_id"], holder, r["cores"], r["memory_mib"])

    async def reserve(self, platform: str, holder: str, cores: int, memory_mib: int) -> bool:
        p = self.platforms[platform]
        doc = await self._coll.find_one_and_update(
            {
                "_id": platform,
                "reservations.holder": {"$ne": holder},
                "used_cores": {"$lte": p.cores - cores},
                "used_memory_mib": {"$lte": mib(p.memory_gib) - memory_mib},
            },
            {
                "$push": {
                    "reservations": {
                        "holder": holder,
                        "cores": cores,
                        "memory_mib": memory_mib,
                        "since": utcnow(),
                    }
                },
                "$inc": {"used_cores": cores, "used_memory_mib": memory_mib},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            PLATFORM_RESERVED_CORES.labels(platform).set(doc["used_cores"])
        return doc is not None

    async def release(self, holder: str, platform: str | None = None) -> Reservation | None:
        held = await self.held_by(holder, platform)
        if held is None:
            return None
        doc = await self._coll.find_one_and_update(
            {"_id": held.platform, "reservations.holder": holder},
            {
                "$pull": {"reservations": {"holder": holder}},
                "$inc": {"used_cores": -held.cores, "used_memory_mib": -held.memory_mib},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # another replica released it first
            return None
        PLATFORM_RESERVED_CORES.labels(held.platform).set(doc["used_cores"])
        return held

    async def snapshot(self) -> list[dict[str, Any]]:
        return [doc async for doc in self._coll.find({})]
