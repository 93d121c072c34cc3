"""How late jobs start against their offers, per platform: learnt as jobs start, and added to the
length of later offers there so that they hold their capacity until the job really runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from cirasa.common.store import Collection
from cirasa.common.store.documents import Documents
from cirasa.planner.documents import StartDelayStats
from cirasa.planner.proposals import Proposals

DELAY_WEIGHT = 0.2  # of the newest observation in the moving average of start delays


class StartDelays:
    def __init__(self, stats: Collection, proposals: Proposals) -> None:
        self._stats = Documents(stats, StartDelayStats)
        self._proposals = proposals

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

    async def of(self, platform: str) -> timedelta:
        stats = await self._stats.get(platform)
        return timedelta(seconds=round(stats.start_delay_s)) if stats else timedelta(0)
