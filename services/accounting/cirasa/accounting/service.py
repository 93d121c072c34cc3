"""Accounting: per-user usage and platform-wide stats, from events only.

Events update this service's own copies of jobs and files (seq-guarded, idempotent: one store write
each) and mark the user dirty in memory; a loop recomputes dirty users about once a second and
publishes UsageUpdated (per user, and for ``*``, the whole platform) in caesar-rest's field names.
The marks die with the process, so a starting service recomputes every user once.

A recount sums every job of its user (the platform's: every job) and so costs more as jobs pile up.
Each is therefore due again only after ``RECOUNT_COST_FACTOR`` times what the last one took (and the
platform's after ``PLATFORM_USAGE_EVERY_S`` at least): the recounts take a bounded share of the
service's time, however many jobs there are, and the figures lag by at most that much.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.accounting.documents import ALL_USERS, FILES, JOBS, USAGE, AccountedFile, AccountedJob, Usage
from cirasa.common.events import (
    TERMINAL_STATES,
    FileDeleted,
    FileUploaded,
    JobState,
    JobStateChanged,
    JobSubmitted,
    TaskProposed,
    UsageUpdated,
    utcnow,
)
from cirasa.common.outbox import queue_claimed
from cirasa.common.paths import safe_user
from cirasa.common.service import Loop, Service, every
from cirasa.common.store.documents import Documents

JOBSIZE_REFRESH_S = 60.0
PLATFORM_USAGE_EVERY_S = 5.0  # the platform-wide usage (every job, every file) is recomputed this often
RECOUNT_COST_FACTOR = 20.0  # a recount is due again after 20 times what it took: at most ~5% of the time

_STATE_FIELDS = {
    JobState.SUCCESS.value: "njobs_completed",
    JobState.FAILURE.value: "njobs_failed",
    JobState.ABORTED.value: "njobs_aborted",
    JobState.PENDING.value: "njobs_pending",
    JobState.RUNNING.value: "njobs_running",
}


class Accounting(Service):
    name: ClassVar[str] = "accounting"
    outbox_collections: ClassVar[tuple[str, ...]] = (USAGE,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jobs = Documents(self.db[JOBS], AccountedJob)
        self.files = Documents(self.db[FILES], AccountedFile)
        self.usage = Documents(self.db[USAGE], Usage)
        self._jobsizes: dict[str, tuple[float, float]] = {}
        self._dirty: set[str] = set()  # users whose usage is to be published again
        self._recounted = False  # every user is recomputed once after a start
        self._due_at: dict[str, float] = {}  # when each user's recount is due again (monotonic)

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {
            JOBS: [IndexModel([("user", ASCENDING), ("state", ASCENDING)])],
            FILES: [IndexModel([("user", ASCENDING)])],
        }

    def register(self) -> None:
        # the jobs are upserts with $setOnInsert, their states guarded by seq: idempotent
        self.bus.subscribe(TaskProposed, self.on_task_proposed, idempotent=True)
        self.bus.subscribe(JobSubmitted, self.on_job_submitted)
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed, idempotent=True)
        self.bus.subscribe(FileUploaded, self.on_file_uploaded)
        self.bus.subscribe(FileDeleted, self.on_file_deleted)

    def loops(self) -> list[Loop]:
        return [self._publish_loop]

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        await every(1.0, stop, self.publish_dirty)

    async def on_task_proposed(self, ev: TaskProposed) -> None:
        """A caesar-rest submission (auto-accepted) is a job from the start; an ExecutionBroker
        proposal becomes one only when an offer is accepted (JobSubmitted)."""
        if ev.auto_accept:
            await self._count_job(ev.correlation_id, ev.user, ev.app)

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        await self._count_job(ev.job_id, ev.user, ev.app)

    async def _count_job(self, job_id: str, user: str, app: str) -> None:
        await self.jobs.update(
            {"_id": job_id},
            {
                "$set": {"user": user, "app": app},
                "$setOnInsert": {"state": JobState.PENDING.value, "seq": 0, "elapsed_s": 0.0},
            },
            upsert=True,
        )
        self._mark_dirty(user)

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        """One conditional upsert: a job not seen yet is inserted in this state; a known one changes
        only if ``ev`` is newer and the job not final (else the upsert's insert collides on ``_id``)."""
        with contextlib.suppress(DuplicateKeyError):  # stale, or the job is final: not applied
            await self.jobs.update(
                {"_id": ev.job_id, "seq": {"$lt": ev.seq}, "state": {"$nin": list(TERMINAL_STATES)}},
                {
                    "$set": {"state": ev.state.value, "seq": ev.seq, "elapsed_s": max(ev.elapsed_s, 0.0)},
                    "$setOnInsert": {"user": ev.user, "app": ev.app},
                },
                upsert=True,
            )
        # marked even when not applied: a retry after a lost answer must still get the usage published
        if ev.state.is_terminal:  # its directory is final now: the next usage measures it again
            for key in (ev.user, ALL_USERS):
                self._jobsizes.pop(key, None)
        self._mark_dirty(ev.user)

    async def on_file_uploaded(self, ev: FileUploaded) -> None:
        await self.files.update(
            {"_id": ev.file_id},
            {"$setOnInsert": {"user": ev.user, "size_bytes": ev.size_bytes, "deleted": False}},
            upsert=True,
        )
        self._mark_dirty(ev.user)

    async def on_file_deleted(self, ev: FileDeleted) -> None:
        await self.files.update(
            {"_id": ev.file_id},
            {"$set": {"user": ev.user, "size_bytes": ev.size_bytes, "deleted": True}},
            upsert=True,
        )
        self._mark_dirty(ev.user)

    def _mark_dirty(self, user: str) -> None:
        self._dirty.update((user, ALL_USERS))

    async def publish_dirty(self) -> None:
        """Recompute and publish each dirty user once (however many events marked it this round)."""
        if not self._recounted:  # the marks of the process before this one are gone: everyone
            known = await self._known_users()
            self._dirty |= known | {ALL_USERS} if known else set()
            self._recounted = True
        # take the marks first: an event landing while we compute marks its user dirty again
        dirty, self._dirty = self._dirty, set()
        now = time.monotonic()
        waiting = {who for who in dirty if self._due_at.get(who, -math.inf) > now}
        self._dirty |= waiting  # not due yet: a later round, with no new event needed
        dirty -= waiting
        while dirty:
            who = min(dirty)
            started = time.monotonic()
            try:
                await self._publish_usage(who)
            except BaseException:
                self._dirty |= dirty  # this user and the rest: next round
                raise
            dirty.discard(who)
            took = time.monotonic() - started
            floor = PLATFORM_USAGE_EVERY_S if who == ALL_USERS else 0.0
            self._due_at[who] = started + max(floor, RECOUNT_COST_FACTOR * took)

    async def _publish_usage(self, who: str) -> None:
        usage = await (self.platform_usage() if who == ALL_USERS else self.user_usage(who))
        event = UsageUpdated(producer=self.name, correlation_id=f"usage:{who}", user=who, usage=usage)
        queued = queue_claimed([event])
        await self.usage.update({"_id": who}, {"$set": {"current": usage}, "$push": queued.push}, upsert=True)
        await self.relay.flush(self.usage.raw, who, queued.entries)

    async def _known_users(self) -> set[str]:
        """Every user with a job or a file here (each event about a user stores one of those)."""
        users: set[str] = set()
        for docs in (self.jobs, self.files):
            users.update(u for u in await docs.raw.distinct("user") if isinstance(u, str))
        return users

    async def user_usage(self, user: str) -> dict[str, Any]:
        out = await self._job_counts({"user": user})
        out["datasize"] = await self._datasize({"user": user, "deleted": False})
        out["jobsize"] = await self._jobsize(user, self.settings.jobs_dir / safe_user(user))
        out["timestamp"] = utcnow().isoformat()
        return out

    async def platform_usage(self) -> dict[str, Any]:
        out = await self._job_counts({})
        out["nusers"] = len(await self._known_users())
        out["datasize"] = await self._datasize({"deleted": False})
        out["jobsize"] = await self._jobsize(ALL_USERS, self.settings.jobs_dir)
        out["totsize"] = round(out["datasize"] + out["jobsize"], 3)
        done = out["njobs_completed"]
        out["avg_completed_job_runtime"] = out["job_completed_runtime"] / done if done else 0.0
        out["timestamp"] = utcnow().isoformat()
        return out

    async def _job_counts(self, match: dict[str, Any]) -> dict[str, Any]:
        """Counts and runtimes by state, summed by the store (a few rows back, whatever the job count)."""
        cursor = await self.jobs.raw.aggregate(
            [
                {"$match": match},
                {"$group": {"_id": "$state", "n": {"$sum": 1}, "elapsed": {"$sum": "$elapsed_s"}}},
            ]
        )
        out: dict[str, Any] = {
            "njobs": 0,
            "njobs_unknown": 0,
            "job_runtime": 0.0,
            "job_completed_runtime": 0.0,
        }
        out.update({f: 0 for f in _STATE_FIELDS.values()})
        for row in await cursor.to_list():
            out["njobs"] += row["n"]
            out[_STATE_FIELDS.get(row["_id"] or "", "njobs_unknown")] += row["n"]
            out["job_runtime"] += float(row["elapsed"] or 0.0)
            if row["_id"] == JobState.SUCCESS.value:
                out["job_completed_runtime"] += float(row["elapsed"] or 0.0)
        return out

    async def _datasize(self, match: dict[str, Any]) -> float:
        cursor = await self.files.raw.aggregate(
            [{"$match": match}, {"$group": {"_id": None, "b": {"$sum": "$size_bytes"}}}]
        )
        rows = await cursor.to_list()
        return round((rows[0]["b"] if rows else 0) / 1024, 3)

    async def _jobsize(self, key: str, path: Path) -> float:
        """Disk used by job directories; walking them is costly, so at most once a minute per user,
        and again as soon as one of the user's jobs ends (its outputs are all written then)."""
        cached = self._jobsizes.get(key)
        if cached is not None and time.monotonic() - cached[0] < JOBSIZE_REFRESH_S:
            return cached[1]
        kib = await asyncio.to_thread(_dir_kib, path)
        self._jobsizes[key] = (time.monotonic(), kib)
        return kib


def _dir_kib(path: Path) -> float:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return round(total / 1024, 3)
