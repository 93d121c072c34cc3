"""The gateway's read model of offer sets and sessions, fed by the planner's events.

``offersets`` holds one document per proposal made through the ExecutionBroker API; ``sessions`` one
per offer (its uuid is the offer id, and once accepted also the job id, except for direct execution
where the job id is the proposal's). The HTTP layer waits on these documents to answer
synchronously while everything underneath stays event-driven.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel

from cirasa.common.events import (
    TERMINAL_STATES,
    CancelRequested,
    Event,
    InputFile,
    JobStaging,
    JobStateChanged,
    JobSubmitted,
    OfferDecision,
    OfferMade,
    OfferStateChanged,
    TaskProposed,
    as_utc,
    utcnow,
)
from cirasa.common.outbox import Entry, queue_claimed
from cirasa.common.store import Database
from cirasa.common.store.documents import Documents
from cirasa.gateway.broker.request import ParsedRequest
from cirasa.gateway.documents import OFFERSETS, SESSIONS, OfferSet, Session, StagingProgress, StoredFile

INDEXES = {SESSIONS: [IndexModel([("offerset_id", ASCENDING)]), IndexModel([("job_id", ASCENDING)])]}

_JOB_PHASE = {
    "SUCCESS": "COMPLETED",
    "FAILURE": "FAILED",
    "TIMED-OUT": "FAILED",
    "ABORTED": "FAILED",
    "CANCELED": "CANCELLED",
    "RUNNING": "RUNNING",
}


def session_phase(doc: Session, now: datetime | None = None) -> str:
    """The ExecutionBroker phase of a session, from its offer's phase and then its job's state."""
    if doc.offer_state != "ACCEPTED":
        return doc.offer_state
    if doc.job_state in (None, "PENDING") and doc.staging is not None:
        return "FAILED" if doc.staging.error else "PREPARING"  # its data is being staged
    if doc.job_state is None:
        return "ACCEPTED"
    if doc.job_state == "PENDING":
        preparing_from = as_utc(doc.start) - timedelta(seconds=doc.staging_s)
        return "WAITING" if preparing_from > (now or utcnow()) else "PREPARING"
    return _JOB_PHASE.get(doc.job_state, "FAILED")


class BrokerState:
    def __init__(self, db: Database, producer: str) -> None:
        self.offersets = Documents(db[OFFERSETS], OfferSet)
        self.sessions = Documents(db[SESSIONS], Session)
        self.producer = producer

    # --- writes from the HTTP side ----------------------------------------------------------

    async def propose(
        self,
        user: str,
        parsed: ParsedRequest,
        files: list[StoredFile],
        request: dict[str, Any],
        direct: bool,
        proposal_id: str,
    ) -> OfferSet:
        offerset = OfferSet(
            id=proposal_id,
            user=user,
            created_at=utcnow(),
            request=request,
            direct=direct,
            result="NO" if parsed.no else "PENDING",
            messages=[message("WARN", w) for w in parsed.warnings] + [message("ERROR", r) for r in parsed.no],
            set_size=None,
            offer_ids=[],
            outbox=[]
            if parsed.no
            else queue_claimed([self.proposal(user, parsed, files, direct, proposal_id)]).entries,
        )
        await self.offersets.insert(offerset)
        return offerset

    def proposal(
        self, user: str, parsed: ParsedRequest, files: list[StoredFile], direct: bool, proposal_id: str
    ) -> TaskProposed:
        return TaskProposed(
            producer=self.producer,
            correlation_id=proposal_id,
            user=user,
            app=parsed.app or parsed.executable_kind,
            options=parsed.options,
            resources=parsed.resources,
            start_after=parsed.start_after,
            start_before=parsed.start_before,
            auto_accept=direct,
            executable_kind=parsed.executable_kind,
            image=parsed.image,
            command=parsed.command,
            staging=parsed.staging,
            volumes=parsed.volumes,
            inputs=[
                InputFile(file_id=f.id, relpath=f.relpath, size_bytes=f.size_bytes, name=f.filename_orig)
                for f in files
            ],
        )

    async def decide(self, session: Session, value: str) -> list[Entry]:
        """Queue the event for a client's phase update (validated by the caller); returns the entries
        written, for ``relay.flush``."""
        event: Event
        env = {"producer": self.producer, "correlation_id": session.offerset_id, "user": session.user}
        if session.offer_state == "OFFERED":
            event = OfferDecision(**env, offer_id=session.id, decision=value)
        else:
            event = CancelRequested(**env, job_id=session.job_id, reason="Session cancelled by its owner")
        queued = queue_claimed([event])
        await self.sessions.update(
            {"_id": session.id},
            {"$set": {"pending": {"value": value, "at": utcnow()}}, "$push": queued.push},
        )
        return queued.entries

    # --- reads ----------------------------------------------------------------------------

    async def offerset(self, user: str, offerset_id: str) -> OfferSet | None:
        return await self.offersets.find_one({"_id": offerset_id, "user": user})

    async def session(self, user: str, session_id: str) -> Session | None:
        return await self.sessions.find_one({"_id": session_id, "user": user})

    async def sessions_of(self, offerset_id: str) -> list[Session]:
        return [s async for s in self.sessions.find({"offerset_id": offerset_id}, sort=[("rank", ASCENDING)])]

    async def wait(self, probe: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await probe()
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.02)

    # --- events ---------------------------------------------------------------------------

    async def on_offer_made(self, ev: OfferMade) -> None:
        offerset = await self.offersets.get(ev.correlation_id)
        if offerset is None:
            return  # a caesar-rest proposal
        if not ev.accepted:
            await self.offersets.update(
                {"_id": ev.correlation_id, "result": "PENDING"},
                {
                    "$set": {
                        "result": "NO",
                        "set_size": 1,
                        "messages": [message("ERROR", r) for r in ev.reasons]
                        or [message("ERROR", "no offer")],
                    }
                },
            )
            return
        assert ev.resources is not None and ev.start is not None and ev.platform is not None
        direct = offerset.direct
        now = utcnow()
        await self.sessions.raw.update_one(
            {"_id": ev.offer_id},
            {
                "$setOnInsert": {
                    "offerset_id": ev.correlation_id,
                    "user": ev.user,
                    "platform": ev.platform,
                    "cores": ev.resources.cores,
                    "memory_gib": ev.resources.memory_gib,
                    "duration_s": ev.resources.duration_s,
                    "start": ev.start,
                    "expires_at": ev.expires_at,
                    "cost_core_hours": ev.cost_core_hours,
                    "description": ev.description,
                    "staging_s": ev.staging_s,
                    "offer_state": "ACCEPTED" if direct else "OFFERED",
                    "job_id": ev.correlation_id if direct else None,
                    "job_state": None,
                    "job_seq": 0,
                    "messages": [],
                    "created": now,
                    "modified": now,
                    "rank": ev.occurred_at,
                    "outbox": [],
                }
            },
            upsert=True,
        )
        await self.offersets.update(
            {"_id": ev.correlation_id},
            {"$addToSet": {"offer_ids": ev.offer_id}, "$set": {"result": "YES", "set_size": ev.set_size}},
        )

    async def on_offer_state_changed(self, ev: OfferStateChanged) -> None:
        changes: dict[str, Any] = {"modified": utcnow()}
        if ev.refused:
            changes["refusal"] = {
                "decision": ev.refused,
                "state": ev.state,
                "reason": ev.reason,
                "at": utcnow(),
            }
        if not ev.refused or ev.state == "EXPIRED":
            changes["offer_state"] = ev.state
        if ev.job_id:
            changes["job_id"] = ev.job_id
        update: dict[str, Any] = {"$set": changes}
        if ev.reason:
            update["$push"] = {"messages": message("WARN" if ev.refused else "INFO", ev.reason)}
        await self.sessions.update({"_id": ev.offer_id}, update)

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        await self.sessions.update(
            {"_id": ev.offer_id}, {"$set": {"job_id": ev.job_id, "modified": utcnow()}}
        )

    async def on_job_staging(self, ev: JobStaging) -> None:
        """PREPARING, with progress; a late progress event never overwrites the final one."""
        progress = StagingProgress.model_validate({**ev.model_dump(), "at": ev.occurred_at})
        query: dict[str, Any] = {"job_id": ev.job_id, "staging.done": {"$ne": True}}
        await self.sessions.raw.update_many(
            query, {"$set": {"staging": progress.model_dump(mode="python"), "modified": utcnow()}}
        )

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        await self.sessions.raw.update_many(
            {"job_id": ev.job_id, "job_seq": {"$lt": ev.seq}, "job_state": {"$nin": list(TERMINAL_STATES)}},
            {
                "$set": {
                    "job_state": ev.state.value,
                    "job_status": ev.status,
                    "job_seq": ev.seq,
                    "modified": utcnow(),
                    "started_at": ev.started_at,
                    "finished_at": ev.finished_at,
                }
            },
        )


def message(level: str, text: str) -> dict[str, Any]:
    return {
        "kind": "urn:cirasa:eb:message",
        "level": level,
        "message": text,
        "template": text,
        "values": {},
        "time": utcnow(),
    }
