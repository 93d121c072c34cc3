"""Re-proposing caesar jobs nobody answered, so a proposal lost on its way still ends.

A caesar job is PENDING from its submission until the planner places it (OfferMade: the job gets a
platform) or ends it (NO: ABORTED). A proposal the planner never got (a broker dropping it, a
planner whose store died) would leave it PENDING forever. So a job with no platform and no news for
``after_s`` has its TaskProposed published again (a new event id, the same correlation id: the
planner opens a proposal once per correlation id, so this never makes a second job). A planner that
holds the job in its queue answers with a PENDING JobStateChanged of ``seq`` 0 (:meth:`heard`), which
restarts the count. After ``attempts`` re-proposals without an answer the job is ABORTED with a
reason the user can read, and a CancelRequested makes sure it does not start after all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cirasa.common.events import (
    CancelRequested,
    Event,
    JobState,
    JobStateChanged,
    TaskProposed,
    new_id,
    utcnow,
)
from cirasa.common.outbox import OutboxRelay, queue_claimed
from cirasa.common.store.documents import Documents
from cirasa.gateway.documents import Job
from cirasa.gateway.quotas import Quotas

CHECK_INTERVAL_S = 10.0


class Reproposal:
    def __init__(
        self,
        jobs: Documents[Job],
        relay: OutboxRelay,
        quotas: Quotas,
        producer: str,
        after_s: float,
        attempts: int,
    ) -> None:
        self._jobs = jobs
        self._relay = relay
        self._quotas = quotas
        self._producer = producer
        self.after_s = after_s
        self.attempts = attempts

    async def sweep(self) -> int:
        """Re-propose (or, after ``attempts``, abort) every unanswered job; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.after_s)
        unanswered = self._jobs.find(
            {
                "state": JobState.PENDING.value,
                "seq": 0,
                "platform": None,
                "proposal": {"$ne": None},
                "checked_at": {"$lt": cutoff},
            }
        )
        acted = 0
        async for job in unanswered:
            if job.reproposed >= self.attempts:
                acted += await self._abort(job)
            else:
                acted += await self._repropose(job)
        return acted

    async def heard(self, job_id: str, status: str) -> None:
        """The planner says it holds the job (a PENDING state of ``seq`` 0): count again from now."""
        await self._jobs.update(
            {"_id": job_id, "state": JobState.PENDING.value, "seq": 0},
            {"$set": {"checked_at": utcnow(), "reproposed": 0, "status": status}},
        )

    async def _repropose(self, job: Job) -> int:
        first = TaskProposed.model_validate(job.proposal)
        again = first.model_copy(
            update={"event_id": new_id(), "occurred_at": utcnow(), "causation_id": first.event_id}
        )
        return await self._change(job, {"$set": {"checked_at": utcnow()}, "$inc": {"reproposed": 1}}, [again])

    async def _abort(self, job: Job) -> int:
        waited = round(self.after_s * (self.attempts + 1))
        reason = (
            f"Job aborted: no platform answered its submission in {waited} s "
            f"({self.attempts} re-proposals); please submit it again"
        )
        env: dict[str, Any] = {"producer": self._producer, "correlation_id": job.id, "user": job.user}
        events: list[Event] = [
            CancelRequested(**env, job_id=job.id, reason=reason),
            JobStateChanged(**env, job_id=job.id, state=JobState.ABORTED, status=reason, seq=1, app=job.app),
        ]
        changes = {"state": JobState.ABORTED.value, "status": reason, "end_date": utcnow().isoformat()}
        if not await self._change(job, {"$set": changes}, events):
            return 0
        await self._quotas.give_back(job.user, jobs=1)
        return 1

    async def _change(self, job: Job, update: dict[str, Any], events: list[Event]) -> int:
        """Apply ``update`` with ``events`` if the job is still as read (another replica may act)."""
        queued = queue_claimed(events)
        applied = await self._jobs.update(
            {
                "_id": job.id,
                "state": JobState.PENDING.value,
                "seq": 0,
                "checked_at": job.checked_at,
                "reproposed": job.reproposed,
            },
            {**update, "$push": queued.push},
        )
        if applied:
            await self._relay.flush(self._jobs.raw, job.id, queued.entries)
        return int(applied)
