"""The planner: TaskProposed → OfferMade (+ JobSubmitted when auto-accepted); capacity held until the end.

A proposal moves NEW → WAITING → PLACED, or NEW → NO, or WAITING → CANCELED. A task that fits a
platform but finds it full waits (FIFO, with backfill) and is placed when capacity comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.common.events import (
    CancelRequested,
    Event,
    JobState,
    JobStateChanged,
    JobSubmitted,
    OfferMade,
    TaskProposed,
    utcnow,
)
from cirasa.common.outbox import outbox_push
from cirasa.common.service import Loop, Service, every
from cirasa.planner.capacity import CapacityBook, mib
from cirasa.planner.fit import choose_resources, no_reasons_summary, static_fit

PROPOSALS = "proposals"
PLATFORMS = "platforms"


def offer_id_for(proposal_id: str, platform: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cirasa:offer:{proposal_id}:{platform}").hex


class Planner(Service):
    name: ClassVar[str] = "planner"
    outbox_collections: ClassVar[tuple[str, ...]] = (PROPOSALS,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposals = self.db[PROPOSALS]
        self.capacity = CapacityBook(self.db[PLATFORMS], self.settings.platforms)
        self._drain_lock = asyncio.Lock()

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {
            PROPOSALS: [IndexModel([("state", ASCENDING), ("created_at", ASCENDING)])],
            PLATFORMS: [IndexModel([("reservations.holder", ASCENDING)])],
        }

    def register(self) -> None:
        self.bus.subscribe(TaskProposed, self.on_task_proposed)
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed)
        self.bus.subscribe(CancelRequested, self.on_cancel_requested)

    async def start(self) -> None:
        await self.capacity.sync_platforms()
        await super().start()

    def loops(self) -> list[Loop]:
        return [self._drain_loop]

    async def _drain_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.drain)

    # --- handlers -------------------------------------------------------------------------

    async def on_task_proposed(self, ev: TaskProposed) -> None:
        pid = ev.correlation_id
        # a redelivery finds the proposal already there and carries on from where the first got to
        with contextlib.suppress(DuplicateKeyError):
            await self.proposals.insert_one(
                {
                    "_id": pid,
                    "state": "NEW",
                    "user": ev.user,
                    "task": ev.model_dump(mode="json"),
                    "created_at": utcnow(),
                    "causation_id": ev.event_id,
                    "outbox": [],
                }
            )
        fits = [static_fit(ev, p) for p in self.settings.platforms]
        if not any(f.ok for f in fits):
            summary = no_reasons_summary(ev, fits)
            reasons = [r for f in fits for r in f.reasons] or [summary]
            events: list[Event] = [
                OfferMade(
                    **self._env(ev), offer_id=offer_id_for(pid, "none"), accepted=False, reasons=reasons
                ),
            ]
            if ev.auto_accept:
                events.append(
                    JobStateChanged(
                        **self._env(ev), job_id=pid, state=JobState.ABORTED, status=summary, seq=1, app=ev.app
                    )
                )
            await self._transition(pid, "NEW", {"state": "NO", "reasons": reasons}, events)
            return
        await self.proposals.update_one({"_id": pid, "state": "NEW"}, {"$set": {"state": "WAITING"}})
        await self.place(pid)

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        if not ev.state.is_terminal:
            return
        released = await self.capacity.release(ev.job_id)
        while await self.capacity.release(ev.job_id) is not None:  # a stray one left by a crash
            pass
        await self.proposals.update_one({"_id": ev.job_id, "state": "PLACED"}, {"$set": {"state": "DONE"}})
        if released is not None:
            self.log.info(
                "capacity.released", job_id=ev.job_id, platform=released.platform, cores=released.cores
            )
            await self.drain()

    async def on_cancel_requested(self, ev: CancelRequested) -> None:
        doc = await self.proposals.find_one({"_id": ev.job_id})
        if doc is None or doc["state"] != "WAITING":
            return  # placed jobs are cancelled by the scheduler; the rest is already final
        await self._transition(
            ev.job_id,
            "WAITING",
            {"state": "CANCELED"},
            [
                JobStateChanged(
                    **self._env(ev),
                    job_id=ev.job_id,
                    state=JobState.CANCELED,
                    status=ev.reason,
                    seq=1,
                    app=doc["task"]["app"],
                ),
            ],
        )

    # --- placing --------------------------------------------------------------------------

    async def place(self, pid: str) -> bool:
        """Reserve capacity for a waiting proposal and make (and accept) the offer."""
        doc = await self.proposals.find_one({"_id": pid})
        if doc is None or doc["state"] != "WAITING":
            return False
        task = TaskProposed.model_validate(doc["task"])
        held = await self.capacity.held_by(pid)  # a previous attempt may have crashed after reserving
        candidates = [f.platform for f in (static_fit(task, p) for p in self.settings.platforms) if f.ok]
        for platform in sorted(candidates, key=lambda p: -p.cores):
            if held is not None and held.platform != platform.name:
                continue
            free_cores, free_mib = await self.capacity.free(platform.name)
            if held is not None:
                free_cores, free_mib = free_cores + held.cores, free_mib + held.memory_mib
            resources = choose_resources(task.resources, free_cores, free_mib)
            if resources is None:
                continue
            if held is None and not await self.capacity.reserve(
                platform.name, pid, resources.cores, mib(resources.memory_gib)
            ):
                continue
            if held is not None:
                resources = resources.model_copy(
                    update={"cores": held.cores, "memory_gib": held.memory_mib / 1024}
                )
            if await self._accept(
                doc, task, platform.name, platform.backend, platform.offer_ttl_s, resources
            ):
                return True
            await self.capacity.release(pid, platform.name)  # placed or cancelled meanwhile
            return False
        return False

    async def _accept(
        self, doc: dict[str, Any], task: TaskProposed, platform: str, backend: str, ttl_s: int, resources: Any
    ) -> bool:
        pid = doc["_id"]
        now = utcnow()
        offer_id = offer_id_for(pid, platform)
        events: list[Event] = [
            OfferMade(
                **self._env(task),
                offer_id=offer_id,
                platform=platform,
                accepted=True,
                resources=resources,
                start=now,
                expires_at=now + timedelta(seconds=ttl_s),
                cost_core_hours=round(resources.cores * resources.duration_s / 3600, 4),
            )
        ]
        if task.auto_accept:
            events.append(
                JobSubmitted(
                    **self._env(task),
                    job_id=pid,
                    offer_id=offer_id,
                    platform=platform,
                    backend=backend,
                    resources=resources,
                    app=task.app,
                    options=task.options,
                    inputs=task.inputs,
                )
            )
        return await self._transition(
            pid,
            "WAITING",
            {
                "state": "PLACED",
                "platform": platform,
                "offer_id": offer_id,
                "resources": resources.model_dump(mode="json"),
                "placed_at": now,
            },
            events,
        )

    async def drain(self) -> None:
        """Place waiting proposals, oldest first; smaller ones may backfill behind a big one."""
        async with self._drain_lock:
            free = {name: await self.capacity.free(name) for name in self.capacity.platforms}
            waiting = (
                self.proposals.find({"state": "WAITING"}, {"task.resources": 1})
                .sort("created_at", ASCENDING)
                .limit(500)
            )
            async for doc in waiting:
                req = doc["task"]["resources"]
                if not any(
                    c >= req["min_cores"] and m >= mib(req["min_memory_gib"]) for c, m in free.values()
                ):
                    continue  # nothing has room for it now: skip without touching the database
                if await self.place(doc["_id"]):
                    free = {name: await self.capacity.free(name) for name in self.capacity.platforms}

    # --- helpers --------------------------------------------------------------------------

    async def _transition(
        self, pid: str, from_state: str, changes: dict[str, Any], events: list[Event]
    ) -> bool:
        result = await self.proposals.update_one(
            {"_id": pid, "state": from_state}, {"$set": changes, "$push": outbox_push(events)}
        )
        if result.modified_count != 1:
            return False
        await self.relay.flush(self.proposals, pid)
        return True

    def _env(self, cause: Event) -> dict[str, Any]:
        return {
            "producer": self.name,
            "correlation_id": cause.correlation_id,
            "causation_id": cause.event_id,
            "user": cause.user,
        }
