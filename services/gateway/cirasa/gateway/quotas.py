"""Per-user quotas, enforced atomically under concurrent requests and gateway replicas.

One ``quotas`` document per user counts what the user holds: jobs not yet ended and bytes stored. A
request takes its share with one conditional ``$inc`` (it matches only while the count leaves room),
so two requests racing for the last slot cannot both win, whichever replica serves them. What is
taken is given back when a job ends or a file is deleted. A crash between taking and giving back
could leave a count too high; a periodic recount from the jobs and files themselves repairs it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import Field
from pymongo.errors import DuplicateKeyError

from cirasa.common.events import TERMINAL_STATES
from cirasa.common.settings import QuotaSettings
from cirasa.common.store import Database
from cirasa.common.store.documents import Documents, StoredDocument
from cirasa.gateway.documents import FILES, JOBS
from cirasa.gateway.errors import Forbidden, TooManyRequests

QUOTAS = "quotas"
GIB = 2**30


class UserQuota(StoredDocument):
    id: str = Field(alias="_id")
    active_jobs: int = 0
    stored_bytes: int = 0


class Quotas:
    def __init__(self, db: Database, settings: QuotaSettings) -> None:
        self.settings = settings
        self.counters = Documents(db[QUOTAS], UserQuota)
        self._jobs, self._files = db[JOBS], db[FILES]

    async def take_job(self, user: str) -> None:
        """One more job for ``user``, or 429 while the user has as many as allowed under way."""
        limit = self.settings.active_jobs
        if not await self._take(user, "active_jobs", 1, limit):
            raise TooManyRequests(
                f"Quota reached: at most {limit} jobs per user may be pending or running at once; "
                "retry when one has ended",
                retry_after_s=self.settings.retry_after_s,
            )

    async def take_bytes(self, user: str, size: int) -> None:
        """Room for a file of ``size`` bytes, or 403: storage frees only when the user deletes files."""
        limit = int(self.settings.stored_gib * GIB)
        if not await self._take(user, "stored_bytes", size, limit):
            raise Forbidden(
                f"Quota reached: at most {self.settings.stored_gib:g} GiB of files per user; "
                "delete files to make room"
            )

    async def count_job(self, user: str) -> None:
        """A job that could not be refused (an accepted offer) counts all the same."""
        await self.counters.update(
            {"_id": user}, {"$inc": {"active_jobs": 1}, "$setOnInsert": {"stored_bytes": 0}}, upsert=True
        )

    async def give_back(self, user: str, *, jobs: int = 0, size: int = 0) -> None:
        await self.counters.update({"_id": user}, {"$inc": {"active_jobs": -jobs, "stored_bytes": -size}})

    async def recount(self) -> None:
        """Set every user's counters from the jobs and files as stored (repairs a crash's leftovers)."""
        held: dict[str, dict[str, int]] = {}
        active = {"state": {"$nin": list(TERMINAL_STATES)}, "deleted": {"$ne": True}}
        async for row in await self._jobs.aggregate(
            [{"$match": active}, {"$group": {"_id": "$user", "n": {"$sum": 1}}}]
        ):
            held.setdefault(row["_id"], {})["active_jobs"] = int(row["n"])
        async for row in await self._files.aggregate(
            [{"$match": {"deleted": False}}, {"$group": {"_id": "$user", "b": {"$sum": "$size_bytes"}}}]
        ):
            held.setdefault(row["_id"], {})["stored_bytes"] = int(row["b"])
        async for quota in self.counters.find({}):
            held.setdefault(quota.id, {})
        for user, counts in held.items():
            fields = {
                "active_jobs": counts.get("active_jobs", 0),
                "stored_bytes": counts.get("stored_bytes", 0),
            }
            await self.counters.update({"_id": user}, {"$set": fields}, upsert=True)

    async def _take(self, user: str, field: str, amount: int, limit: int) -> bool:
        query: dict[str, Any] = {"_id": user, field: {"$lte": limit - amount}}
        if await self.counters.update(query, {"$inc": {field: amount}}):
            return True
        with contextlib.suppress(DuplicateKeyError):  # the user's first request: make the document
            await self.counters.raw.insert_one(UserQuota(id=user).to_doc())
        return await self.counters.update(query, {"$inc": {field: amount}})
