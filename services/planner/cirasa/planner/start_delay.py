"""How late jobs start against their offers, per platform: learnt as jobs start, and added to the
length of later offers there so that they hold their capacity until the job really runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from cirasa.common.store import Collection
from cirasa.common.store.documents import Documents
from cirasa.planner.documents import StartDelayStats
from cirasa.planner.proposals import Proposals

DELAY_WEIGHT = 0.2  # of the newest observation in the moving average of start delays
CACHE_S = 5.0  # how long an average read from the store is used before reading it again


class StartDelays:
    def __init__(self, stats: Collection, proposals: Proposals) -> None:
        self._stats = Documents(stats, StartDelayStats)
        self._proposals = proposals
        self._cached: dict[str, tuple[float, timedelta]] = {}  # platform -> (read at, average)

    async def learn(self, job_id: str, started: datetime) -> None:
        """Fold how late the job started against its accepted offer into its platform's average."""
        doc = await self._proposals.docs.find_one({"$or": [{"_id": job_id}, {"offers.offer_id": job_id}]})
        accepted = [o for o in (doc.offers if doc else []) if o.state == "ACCEPTED"]
        if not accepted:
            return
        offer = accepted[0]
        delay = max((started - offer.start).total_seconds(), 0.0)
        stats = await self._stats.get(offer.platform)
        old = stats.start_delay_s if stats else delay
        await self._stats.raw.update_one(
            {"_id": offer.platform},
            {
                "$set": {"start_delay_s": (1 - DELAY_WEIGHT) * old + DELAY_WEIGHT * delay},
                "$inc": {"samples": 1},
            },
            upsert=True,
        )
        self._cached.pop(offer.platform, None)

    async def of(self, platform: str) -> timedelta:
        """The platform's average (read from the store at most every ``CACHE_S``: it is asked for on
        every offer, and moves slowly; other replicas' learning shows within that time)."""
        cached = self._cached.get(platform)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        stats = await self._stats.get(platform)
        delay = timedelta(seconds=round(stats.start_delay_s)) if stats else timedelta(0)
        self._cached[platform] = (time.monotonic(), delay)
        return delay
