"""The jobs read model: what the caesar and UWS faces show of every job, fed by events.

Every change is conditional on the job's ``seq`` (a stale event changes nothing), terminal states are
sinks, and a job's quota slot is given back by the one delivery that ends it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from cirasa.common.events import (
    TERMINAL_STATES,
    JobStaging,
    JobState,
    JobStateChanged,
    JobSubmitted,
    OfferMade,
)
from cirasa.common.store.documents import Documents
from cirasa.gateway.documents import Job, StagingProgress
from cirasa.gateway.quotas import Quotas

EARLY = "early"  # made by a state change before its JobSubmitted: what the job is comes later


def newer_than(ev: JobStateChanged) -> dict[str, Any]:
    """The job, if ``ev`` is newer than what it holds and it has not ended (terminal states are sinks)."""
    return {"_id": ev.job_id, "seq": {"$lt": ev.seq}, "state": {"$nin": list(TERMINAL_STATES)}}


class JobsReadModel:
    def __init__(self, jobs: Documents[Job], quotas: Quotas) -> None:
        self.jobs = jobs
        self.quotas = quotas

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        changes: dict[str, Any] = {
            "state": ev.state.value,
            "status": ev.status,
            "seq": ev.seq,
            "exit_code": ev.exit_code,
            "elapsed_time": round(ev.elapsed_s, 3),
        }
        if ev.platform:
            changes["platform"] = ev.platform
        if ev.started_at:
            changes["start_date"] = ev.started_at.isoformat()
        if ev.finished_at:
            changes["end_date"] = ev.finished_at.isoformat()
        applied = await self.jobs.update(newer_than(ev), {"$set": changes})
        if not applied and await self._adopted(ev, changes):
            applied = True
        if applied and ev.state.is_terminal:  # this delivery ended the job: its quota slot frees
            await self.quotas.give_back(ev.user, jobs=1)

    async def _adopted(self, ev: JobStateChanged, changes: dict[str, Any]) -> bool:
        """A state change that overtook its job's JobSubmitted (other queue) makes the job's document;
        JobSubmitted then fills in what it knows and keeps the state (found by the simulation)."""
        if await self.jobs.raw.find_one({"_id": ev.job_id}, {"_id": 1}) is not None:
            return False  # the job is there: this change was stale, or the job is already final
        early: dict[str, Any] = {"_id": ev.job_id, "job_id": ev.job_id, "user": ev.user, "app": ev.app or ""}
        early[EARLY] = True
        early |= {
            "submit_date": ev.occurred_at.isoformat(),
            "tag": "",
            "metadata": "",
            "pid": "",
            "outbox": [],
        }
        try:
            await self.jobs.raw.insert_one({**early, **changes})
        except DuplicateKeyError:  # JobSubmitted got there meanwhile: apply the change to its document
            return await self.jobs.update(newer_than(ev), {"$set": changes})
        await self.quotas.count_job(ev.user)
        return True

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        """Jobs accepted through the ExecutionBroker API join the jobs read model (caesar ones are
        there already, with what the user sent, which stays as it is)."""
        what = {
            "app": ev.app,
            "job_inputs": ev.options,
            "data_inputs": ev.inputs[0].file_id if ev.inputs else "",
            "submit_date": ev.occurred_at.isoformat(),
            "resources": ev.resources.model_dump(),
            "offer_start": ev.start.isoformat() if ev.start else None,
            "quote": (ev.start + timedelta(seconds=ev.resources.duration_s)).isoformat()
            if ev.start
            else None,
        }
        where = {
            "job_id": ev.job_id,
            "user": ev.user,
            "tag": "",
            "metadata": "",
            "state": JobState.PENDING.value,
            "seq": 0,
            "status": f"Offer {ev.offer_id} accepted on platform {ev.platform}",
            "pid": "",
            "exit_code": -1,
            "elapsed_time": 0.0,
            "platform": ev.platform,
            "outbox": [],
        }
        result = await self.jobs.raw.update_one(
            {"_id": ev.job_id}, {"$setOnInsert": what | where}, upsert=True
        )
        if result.upserted_id is not None:  # an accepted offer is a job under way: it counts
            await self.quotas.count_job(ev.user)
        else:  # a document an early state change made learns what the job is, and keeps its state
            await self.jobs.raw.update_one(
                {"_id": ev.job_id, EARLY: True}, {"$set": what, "$unset": {EARLY: ""}}
            )

    async def on_job_staging(self, ev: JobStaging) -> None:
        """A job still PENDING says how its data staging goes."""
        progress = StagingProgress.model_validate(ev.model_dump())
        await self.jobs.update(
            {"_id": ev.job_id, "state": JobState.PENDING.value}, {"$set": {"status": progress.describe()}}
        )

    async def on_offer_made(self, ev: OfferMade) -> None:
        """An auto-accepted job learns where and when it runs."""
        if ev.accepted and ev.platform:
            await self.jobs.update(
                {"_id": ev.correlation_id, "seq": 0},
                {
                    "$set": {
                        "platform": ev.platform,
                        "status": f"Offer accepted on platform {ev.platform}",
                        "resources": ev.resources.model_dump() if ev.resources else None,
                        "offer_start": ev.start.isoformat() if ev.start else None,
                        "quote": (ev.start + timedelta(seconds=ev.resources.duration_s)).isoformat()
                        if ev.start and ev.resources
                        else None,
                    }
                },
            )
