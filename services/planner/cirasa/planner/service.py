"""The planner: "can I run this, and when?" — offers against each platform's capacity calendar.

A proposal is NEW, then one of:

* NO — no platform can run it (reasons per platform);
* OFFERED → ACCEPTED (one offer accepted, its siblings rejected), or every offer REJECTED / EXPIRED;
* WAITING → PLACED for auto-accepted tasks (caesar-rest ``POST /job``): they run as soon as capacity is
  free now, and wait (oldest first, smaller ones backfilling) while it is not; WAITING → CANCELED.

Every offer books what it offers, over its interval, until it is accepted (the booking becomes the
job's, released when the job ends), rejected or expired. Proposal changes are compare-and-swap on the
proposal's ``version`` and carry their events in the same write (outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.backends.base import BackendUnavailable
from cirasa.backends.factory import make_backend
from cirasa.common.events import (
    CancelRequested,
    Event,
    JobState,
    JobStateChanged,
    JobSubmitted,
    OfferDecision,
    OfferMade,
    OfferStateChanged,
    Resources,
    TaskProposed,
    as_utc,
    utcnow,
)
from cirasa.common.metrics import OFFERS
from cirasa.common.outbox import outbox_push
from cirasa.common.service import Loop, Service, every
from cirasa.common.settings import PlatformConfig
from cirasa.planner.calendar import Booking, free_at
from cirasa.planner.capacity import CapacityBook, mib
from cirasa.planner.fit import no_reasons_summary, static_fit

PROPOSALS = "proposals"
PLATFORMS = "platforms"
STATS = "stats"
DELAY_WEIGHT = 0.2  # of the newest observation in the moving average of start delays
DEFAULT_WINDOW = timedelta(hours=2)
EXTERNAL_REFRESH = timedelta(seconds=30)  # how often a backend's own load is read
MAX_WINDOW = timedelta(days=30)


def offer_id_for(proposal_id: str, platform: str, variant: int = 0) -> str:
    """Deterministic, so a redelivered proposal books the same offers again (a no-op)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cirasa:offer:{proposal_id}:{platform}:{variant}").hex


@dataclass(frozen=True)
class Candidate:
    platform: PlatformConfig
    start: datetime
    cores: int
    memory_mib: int
    description: str


class Planner(Service):
    name: ClassVar[str] = "planner"
    outbox_collections: ClassVar[tuple[str, ...]] = (PROPOSALS,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposals = self.db[PROPOSALS]
        self.capacity = CapacityBook(self.db[PLATFORMS], self.settings.platforms)
        self._drain_lock = asyncio.Lock()
        self._load_readers: dict[str, Any] = {}

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {
            PROPOSALS: [
                IndexModel([("state", ASCENDING), ("created_at", ASCENDING)]),
                IndexModel([("offers.offer_id", ASCENDING)]),
            ],
            PLATFORMS: [IndexModel([("bookings.job_id", ASCENDING)])],
        }

    def register(self) -> None:
        self.bus.subscribe(TaskProposed, self.on_task_proposed)
        self.bus.subscribe(OfferDecision, self.on_offer_decision)
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed)
        self.bus.subscribe(CancelRequested, self.on_cancel_requested)

    async def start(self) -> None:
        await self.capacity.sync_platforms()
        await super().start()

    def loops(self) -> list[Loop]:
        return [self._drain_loop, self._expiry_loop, self._backend_load_loop]

    async def _backend_load_loop(self, stop: asyncio.Event) -> None:
        await every(EXTERNAL_REFRESH.total_seconds(), stop, self.learn_backend_load)

    async def learn_backend_load(self) -> None:
        """Book what a backend says is busy beyond our own jobs (other users of a Slurm cluster), so
        offers there start when the cluster really has room."""
        now = utcnow()
        for platform in self.settings.platforms:
            if platform.backend != "slurm":  # the one backend whose load others share and that can tell
                continue
            try:
                if platform.name not in self._load_readers:
                    self._load_readers[platform.name] = make_backend(platform, self.settings)
                read = self._load_readers[platform.name].capacity
            except (BackendUnavailable, AttributeError):
                continue
            try:
                cap = await asyncio.to_thread(read)
            except Exception as exc:  # the cluster is unreachable: keep the last figure until it expires
                self.log.warning("backend.capacity_failed", platform=platform.name, error=repr(exc))
                continue
            state = await self.capacity.state(platform.name)
            ours_c = sum(
                b.cores for b in state.bookings if b.kind == "job" and b.job_id and b.start <= now < b.end
            )
            ours_m = sum(
                b.memory_mib
                for b in state.bookings
                if b.kind == "job" and b.job_id and b.start <= now < b.end
            )
            busy_c = max(0, cap.total_cores - cap.free_cores - ours_c)
            busy_m = max(0, cap.total_memory_mb - cap.free_memory_mb - ours_m)
            await self.capacity.set_external(
                platform.name,
                Booking(
                    f"external:{platform.name}",
                    busy_c,
                    busy_m,
                    now,
                    now + 2 * EXTERNAL_REFRESH,
                    "job",
                    None,
                    None,
                ),
            )

    async def _drain_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.drain)

    async def _expiry_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.expire)

    # --- proposals ------------------------------------------------------------------------

    async def on_task_proposed(self, ev: TaskProposed) -> None:
        pid = ev.correlation_id
        # a redelivery finds the proposal already there and carries on from where the first got to
        with contextlib.suppress(DuplicateKeyError):
            await self.proposals.insert_one(
                {
                    "_id": pid,
                    "state": "NEW",
                    "version": 0,
                    "user": ev.user,
                    "task": ev.model_dump(mode="json"),
                    "created_at": utcnow(),
                    "causation_id": ev.event_id,
                    "offers": [],
                    "outbox": [],
                }
            )
        doc = await self.proposals.find_one({"_id": pid})
        if doc is None or doc["state"] != "NEW":
            return
        fits = [static_fit(ev, p) for p in self.settings.platforms]
        usable = [f.platform for f in fits if f.ok]
        if not usable:
            summary = no_reasons_summary(ev, fits)
            await self._say_no(doc, ev, [r for f in fits for r in f.reasons] or [summary], summary)
        elif ev.auto_accept:
            await self._cas(doc, {"state": "WAITING"}, [])
            await self.place(pid)
        else:
            await self._make_offers(doc, ev, usable)

    async def _say_no(self, doc: dict[str, Any], ev: TaskProposed, reasons: list[str], summary: str) -> None:
        pid = doc["_id"]
        events: list[Event] = [
            OfferMade(**self._env(ev), offer_id=offer_id_for(pid, "none"), accepted=False, reasons=reasons)
        ]
        if ev.auto_accept:
            events.append(
                JobStateChanged(
                    **self._env(ev), job_id=pid, state=JobState.ABORTED, status=summary, seq=1, app=ev.app
                )
            )
        await self._cas(doc, {"state": "NO", "reasons": reasons}, events)

    def _window(self, task: TaskProposed, now: datetime) -> tuple[datetime, datetime]:
        start = max(now, as_utc(task.start_after)) if task.start_after else now
        end = as_utc(task.start_before) if task.start_before else start + DEFAULT_WINDOW
        return start, min(end, now + MAX_WINDOW)

    async def _candidates(
        self,
        task: TaskProposed,
        platform: PlatformConfig,
        window: tuple[datetime, datetime],
        alternatives: bool,
        slack: timedelta = timedelta(0),
    ) -> list[Candidate]:
        """The earliest start with as much as fits there; then, if that is less than asked, more cores
        later. ``slack`` lengthens the booking by how late jobs usually start on this platform."""
        state = await self.capacity.state(platform.name)
        req, duration = task.resources, timedelta(seconds=task.resources.duration_s) + slack
        min_mib, max_mib = mib(req.min_memory_gib), mib(req.max_memory_gib)
        start = state.calendar.earliest_start(
            state.cores, state.memory_mib, req.min_cores, min_mib, duration, *window
        )
        if start is None:
            return []
        free_c, free_m = free_at(state.calendar, state.cores, state.memory_mib, start, duration)
        first = Candidate(platform, start, min(req.max_cores, free_c), min(max_mib, free_m), "earliest start")
        out = [first]
        if alternatives and first.cores < req.max_cores:
            later = state.calendar.earliest_start(
                state.cores, state.memory_mib, req.max_cores, min_mib, duration, *window
            )
            if later is not None and later != start:
                _, free_m2 = free_at(state.calendar, state.cores, state.memory_mib, later, duration)
                out.append(
                    Candidate(platform, later, req.max_cores, min(max_mib, free_m2), "more cores, later")
                )
        return out

    async def _make_offers(
        self, doc: dict[str, Any], task: TaskProposed, platforms: list[PlatformConfig]
    ) -> None:
        pid, now = doc["_id"], utcnow()
        window = self._window(task, now)
        if window[1] < window[0]:
            await self._say_no(doc, task, ["the requested start window has already passed"], "window passed")
            return
        duration = timedelta(seconds=task.resources.duration_s)
        offers: list[dict[str, Any]] = []
        reasons: list[str] = []
        for platform in platforms:
            delay = await self.start_delay(platform.name)  # jobs here tend to start this late
            found = await self._candidates(task, platform, window, alternatives=True, slack=delay)
            if not found:
                reasons.append(
                    f"{platform.name}: no free slot of {task.resources.min_cores} cores and "
                    f"{task.resources.min_memory_gib:g} GiB for {task.resources.duration_s} s "
                    "starting between "
                    f"{window[0].isoformat()} and {window[1].isoformat()}"
                )
            for variant, cand in enumerate(found):
                offer_id = offer_id_for(pid, platform.name, variant)
                expires = now + timedelta(seconds=platform.offer_ttl_s)
                booking = Booking(
                    offer_id,
                    cand.cores,
                    cand.memory_mib,
                    cand.start,
                    cand.start + duration + delay,
                    "offer",
                    None,
                    expires,
                )
                if await self.capacity.book(platform.name, booking):
                    note = f"; jobs here start {delay.total_seconds():g} s late on average" if delay else ""
                    offers.append(
                        _offer(
                            offer_id, platform, cand, booking.end, expires, "OFFERED", cand.description + note
                        )
                    )
        if not offers:
            await self._say_no(doc, task, reasons, "No platform has room in the requested window")
            return
        events: list[Event] = [
            OfferMade(
                **self._env(task),
                offer_id=o["offer_id"],
                platform=o["platform"],
                accepted=True,
                resources=self._resources(o, task),
                start=o["start"],
                expires_at=o["expires_at"],
                cost_core_hours=round(o["cores"] * task.resources.duration_s / 3600, 4),
                set_size=len(offers),
                description=o["description"],
            )
            for o in offers
        ]
        if not await self._cas(doc, {"state": "OFFERED", "offers": offers}, events):
            # another delivery got there first; our bookings are its bookings (same holders)
            return

    # --- auto-accepted tasks --------------------------------------------------------------

    async def place(self, pid: str) -> bool:
        """Book capacity from now for a waiting auto-accepted task, and submit it."""
        doc = await self.proposals.find_one({"_id": pid})
        if doc is None or doc["state"] != "WAITING":
            return False
        task = TaskProposed.model_validate(doc["task"])
        now = utcnow()
        start = max(now, as_utc(task.start_after)) if task.start_after else now
        duration = timedelta(seconds=task.resources.duration_s)
        platforms = [p for p in self.settings.platforms if static_fit(task, p).ok]
        for platform in sorted(platforms, key=lambda p: -p.cores):
            for cand in await self._candidates(task, platform, (start, start), alternatives=False):
                offer_id = offer_id_for(pid, platform.name)
                booking = Booking(
                    offer_id, cand.cores, cand.memory_mib, cand.start, cand.start + duration, "job", pid
                )
                if not await self.capacity.book(platform.name, booking):
                    continue
                offer = _offer(offer_id, platform, cand, booking.end, now, "ACCEPTED", "auto-accepted")
                resources = self._resources(offer, task)
                events: list[Event] = [
                    OfferMade(
                        **self._env(task),
                        offer_id=offer_id,
                        platform=platform.name,
                        accepted=True,
                        resources=resources,
                        start=cand.start,
                        expires_at=now,
                        cost_core_hours=round(cand.cores * task.resources.duration_s / 3600, 4),
                    ),
                    self._job_submitted(task, pid, offer),
                ]
                if await self._cas(doc, {"state": "PLACED", "offers": [offer]}, events):
                    return True
                await self.capacity.release(platform.name, {offer_id})  # cancelled meanwhile
                return False
        return False

    async def drain(self) -> None:
        """Place waiting tasks, oldest first; smaller ones may backfill behind a big one."""
        async with self._drain_lock:
            now = utcnow()
            free: dict[str, tuple[int, int]] = {}
            for name in self.capacity.platforms:
                state = await self.capacity.state(name)
                free[name] = free_at(state.calendar, state.cores, state.memory_mib, now, timedelta(seconds=1))
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
                    for name in self.capacity.platforms:
                        state = await self.capacity.state(name)
                        free[name] = free_at(
                            state.calendar, state.cores, state.memory_mib, utcnow(), timedelta(seconds=1)
                        )

    # --- decisions on offers --------------------------------------------------------------

    async def on_offer_decision(self, ev: OfferDecision) -> None:
        doc = await self.proposals.find_one({"offers.offer_id": ev.offer_id})
        if doc is None:
            self.log.warning("offer.unknown", offer_id=ev.offer_id)
            return
        offer = next(o for o in doc["offers"] if o["offer_id"] == ev.offer_id)
        task = TaskProposed.model_validate(doc["task"])
        if offer["state"] == "OFFERED" and as_utc(offer["expires_at"]) <= utcnow():
            await self._expire_offers(doc, {ev.offer_id}, refused=ev)
            return
        if offer["state"] != "OFFERED":
            verb = {"ACCEPTED": "accepted", "REJECTED": "rejected", "CANCELLED": "cancelled"}[ev.decision]
            await self._cas(
                doc,
                {},
                [
                    OfferStateChanged(
                        **self._env(ev),
                        offer_id=ev.offer_id,
                        state=offer["state"],
                        refused=ev.decision,
                        reason=f"the offer is {offer['state']}; only an OFFERED offer can be {verb}",
                    )
                ],
            )
            return
        if ev.decision == "ACCEPTED":
            await self._accept(doc, task, offer, ev)
        else:
            offers = [
                {**o, "state": ev.decision} if o["offer_id"] == ev.offer_id else o for o in doc["offers"]
            ]
            changes: dict[str, Any] = {"offers": offers}
            if all(o["state"] != "OFFERED" for o in offers):
                changes["state"] = "CLOSED"
            if await self._cas(
                doc, changes, [OfferStateChanged(**self._env(ev), offer_id=ev.offer_id, state=ev.decision)]
            ):
                await self.capacity.release(offer["platform"], {ev.offer_id})

    async def _accept(
        self, doc: dict[str, Any], task: TaskProposed, offer: dict[str, Any], ev: OfferDecision
    ) -> None:
        job_id = offer["offer_id"]
        offers: list[dict[str, Any]] = []
        events: list[Event] = []
        for o in doc["offers"]:
            if o["offer_id"] == job_id:
                offers.append({**o, "state": "ACCEPTED"})
                events.append(
                    OfferStateChanged(**self._env(ev), offer_id=job_id, state="ACCEPTED", job_id=job_id)
                )
            elif o["state"] == "OFFERED":
                offers.append({**o, "state": "REJECTED"})
                events.append(
                    OfferStateChanged(
                        **self._env(ev),
                        offer_id=o["offer_id"],
                        state="REJECTED",
                        reason="a sibling offer was accepted",
                    )
                )
            else:
                offers.append(o)
        events.append(self._job_submitted(task, job_id, offer, cause=ev))
        if not await self._cas(doc, {"state": "ACCEPTED", "offers": offers}, events):
            return
        await self.capacity.confirm(offer["platform"], job_id, job_id)
        for o in offers:
            if o["state"] == "REJECTED" and o["offer_id"] != job_id:
                await self.capacity.release(o["platform"], {o["offer_id"]})

    async def expire(self) -> None:
        """Move offers past their expiry to EXPIRED and free what they held; mend orphan bookings."""
        now = utcnow()
        due = self.proposals.find(
            {"state": "OFFERED", "offers": {"$elemMatch": {"state": "OFFERED", "expires_at": {"$lte": now}}}}
        )
        async for doc in due:
            ids = {
                o["offer_id"]
                for o in doc["offers"]
                if o["state"] == "OFFERED" and as_utc(o["expires_at"]) <= now
            }
            await self._expire_offers(doc, ids)
        for name in self.capacity.platforms:
            state = await self.capacity.state(name)
            stale = {
                b.holder
                for b in state.bookings
                if b.kind == "offer"
                and b.expires_at is not None
                and b.expires_at <= now - timedelta(seconds=5)
            }
            for holder in stale:  # left behind by a crash between booking and writing the proposal
                owner = await self.proposals.find_one({"offers.offer_id": holder}, {"offers": 1})
                offer = next((o for o in (owner or {}).get("offers", []) if o["offer_id"] == holder), None)
                if offer is not None and offer["state"] == "ACCEPTED":
                    await self.capacity.confirm(name, holder, holder)
                else:
                    await self.capacity.release(name, {holder})

    async def _expire_offers(
        self, doc: dict[str, Any], ids: set[str], refused: OfferDecision | None = None
    ) -> None:
        offers = [{**o, "state": "EXPIRED"} if o["offer_id"] in ids else o for o in doc["offers"]]
        changes: dict[str, Any] = {"offers": offers}
        if all(o["state"] != "OFFERED" for o in offers):
            changes["state"] = "CLOSED"
        env = (
            self._env(refused)
            if refused
            else {"producer": self.name, "correlation_id": doc["_id"], "user": doc["user"]}
        )
        events: list[Event] = []
        for o in doc["offers"]:
            if o["offer_id"] in ids:
                reason = f"the offer expired at {as_utc(o['expires_at']).isoformat()}"
                events.append(
                    OfferStateChanged(
                        **env,
                        offer_id=o["offer_id"],
                        state="EXPIRED",
                        reason=reason,
                        refused=refused.decision if refused and refused.offer_id == o["offer_id"] else None,
                    )
                )
        if await self._cas(doc, changes, events):
            for o in doc["offers"]:
                if o["offer_id"] in ids:
                    await self.capacity.release(o["platform"], {o["offer_id"]})

    # --- job ends and cancels -------------------------------------------------------------

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        if ev.state is JobState.RUNNING and ev.started_at is not None:
            await self._learn_start_delay(ev.job_id, as_utc(ev.started_at))
        if not ev.state.is_terminal:
            return
        released = await self.capacity.release_job(ev.job_id)
        await self.proposals.update_one({"_id": ev.job_id, "state": "PLACED"}, {"$set": {"state": "DONE"}})
        if released:
            self.log.info("capacity.released", job_id=ev.job_id, cores=sum(b.cores for b in released))
            await self.drain()

    async def on_cancel_requested(self, ev: CancelRequested) -> None:
        doc = await self.proposals.find_one({"_id": ev.job_id})
        if doc is None or doc["state"] != "WAITING":
            return  # placed jobs are cancelled by the scheduler; the rest is already final
        await self._cas(
            doc,
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

    # --- estimates ------------------------------------------------------------------------

    async def _learn_start_delay(self, job_id: str, started: datetime) -> None:
        """Keep a moving average, per platform, of how late jobs start against their offers."""
        doc = await self.proposals.find_one(
            {"$or": [{"_id": job_id}, {"offers.offer_id": job_id}]}, {"offers": 1, "_id": 1}
        )
        offers = [o for o in (doc or {}).get("offers", []) if o["state"] == "ACCEPTED"]
        if not offers:
            return
        offer = offers[0]
        delay = max((started - as_utc(offer["start"])).total_seconds(), 0.0)
        stats = await self.db[STATS].find_one({"_id": offer["platform"]})
        old = stats["start_delay_s"] if stats else delay
        await self.db[STATS].update_one(
            {"_id": offer["platform"]},
            {
                "$set": {"start_delay_s": (1 - DELAY_WEIGHT) * old + DELAY_WEIGHT * delay},
                "$inc": {"samples": 1},
            },
            upsert=True,
        )

    async def start_delay(self, platform: str) -> timedelta:
        stats = await self.db[STATS].find_one({"_id": platform})
        return timedelta(seconds=round(stats["start_delay_s"])) if stats else timedelta(0)

    # --- helpers --------------------------------------------------------------------------

    def _job_submitted(
        self, task: TaskProposed, job_id: str, offer: dict[str, Any], cause: Event | None = None
    ) -> JobSubmitted:
        return JobSubmitted(
            **self._env(cause or task),
            job_id=job_id,
            offer_id=offer["offer_id"],
            platform=offer["platform"],
            backend=offer["backend"],
            resources=self._resources(offer, task),
            app=task.app,
            options=task.options,
            inputs=task.inputs,
            start=offer["start"],
            image=task.image,
            command=task.command,
        )

    @staticmethod
    def _resources(offer: dict[str, Any], task: TaskProposed) -> Resources:
        return Resources(
            cores=offer["cores"], memory_gib=offer["memory_mib"] / 1024, duration_s=task.resources.duration_s
        )

    async def _cas(self, doc: dict[str, Any], changes: dict[str, Any], events: list[Event]) -> bool:
        """Write ``changes`` and queue ``events`` only if the proposal is still the version we read."""
        update: dict[str, Any] = {"$inc": {"version": 1}}
        if changes:
            update["$set"] = changes
        if events:
            update["$push"] = outbox_push(events)
        result = await self.proposals.update_one(
            {"_id": doc["_id"], "version": doc.get("version", 0)}, update
        )
        if result.modified_count != 1:
            return False
        doc.update(changes)
        doc["version"] = doc.get("version", 0) + 1
        if events:
            _count_offers(doc, events)
            await self.relay.flush(self.proposals, doc["_id"])
        return True

    def _env(self, cause: Event) -> dict[str, Any]:
        return {
            "producer": self.name,
            "correlation_id": cause.correlation_id,
            "causation_id": cause.event_id,
            "user": cause.user,
        }


def _count_offers(doc: dict[str, Any], events: list[Event]) -> None:
    platforms = {o["offer_id"]: o["platform"] for o in doc.get("offers", [])}
    for ev in events:
        if isinstance(ev, OfferMade):
            OFFERS.labels(ev.platform or "none", "made" if ev.accepted else "no").inc()
        elif isinstance(ev, OfferStateChanged) and ev.refused is None:
            OFFERS.labels(platforms.get(ev.offer_id, "?"), ev.state.lower()).inc()


def _offer(
    offer_id: str,
    platform: PlatformConfig,
    cand: Candidate,
    end: datetime,
    expires: datetime,
    state: str,
    description: str,
) -> dict[str, Any]:
    """An offer as the proposal document keeps it."""
    return {
        "offer_id": offer_id,
        "platform": platform.name,
        "backend": platform.backend,
        "cores": cand.cores,
        "memory_mib": cand.memory_mib,
        "start": cand.start,
        "end": end,
        "expires_at": expires,
        "state": state,
        "description": description,
    }
