"""Accounting: per-user usage and platform-wide stats, from events only.

Events update this service's own copies of jobs and files (seq-guarded, idempotent) and mark the
user dirty; a loop recomputes dirty users about once a second and publishes UsageUpdated (per user,
and for ``*``, the whole platform) in caesar-rest's field names.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel

from cirasa.accounting.documents import ALL_USERS, FILES, JOBS, USAGE, AccountedFile, AccountedJob, Usage
from cirasa.common.events import (
    FileDeleted,
    FileUploaded,
    JobState,
    JobStateChanged,
    JobSubmitted,
    TaskProposed,
    UsageUpdated,
    utcnow,
)
from cirasa.common.outbox import outbox_push
from cirasa.common.paths import safe_user
from cirasa.common.service import Loop, Service, every
from cirasa.common.store.documents import Documents

JOBSIZE_REFRESH_S = 60.0

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

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {
            JOBS: [IndexModel([("user", ASCENDING), ("state", ASCENDING)])],
            FILES: [IndexModel([("user", ASCENDING)])],
            USAGE: [IndexModel([("dirty", ASCENDING)])],
        }

    def register(self) -> None:
        self.bus.subscribe(TaskProposed, self.on_task_proposed)
        self.bus.subscribe(JobSubmitted, self.on_job_submitted)
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed)
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
        await self._mark_dirty(user)

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        await self.jobs.update(
            {"_id": ev.job_id}, {"$setOnInsert": {"seq": 0, "user": ev.user, "app": ev.app}}, upsert=True
        )
        applied = await self.jobs.update(
            {
                "_id": ev.job_id,
                "seq": {"$lt": ev.seq},
                "state": {"$nin": [s.value for s in JobState if s.is_terminal]},
            },
            {"$set": {"state": ev.state.value, "seq": ev.seq, "elapsed_s": max(ev.elapsed_s, 0.0)}},
        )
        if applied:
            if ev.state.is_terminal:  # its directory is final now: the next usage measures it again
                for key in (ev.user, ALL_USERS):
                    self._jobsizes.pop(key, None)
            await self._mark_dirty(ev.user)

    async def on_file_uploaded(self, ev: FileUploaded) -> None:
        await self.files.update(
            {"_id": ev.file_id},
            {"$setOnInsert": {"user": ev.user, "size_bytes": ev.size_bytes, "deleted": False}},
            upsert=True,
        )
        await self._mark_dirty(ev.user)

    async def on_file_deleted(self, ev: FileDeleted) -> None:
        await self.files.update(
            {"_id": ev.file_id},
            {"$set": {"user": ev.user, "size_bytes": ev.size_bytes, "deleted": True}},
            upsert=True,
        )
        await self._mark_dirty(ev.user)

    async def _mark_dirty(self, user: str) -> None:
        for who in (user, ALL_USERS):
            await self.usage.update(
                {"_id": who}, {"$set": {"dirty": True}, "$setOnInsert": {"outbox": []}}, upsert=True
            )

    async def publish_dirty(self) -> None:
        async for doc in self.usage.find({"dirty": True}):
            who = doc.id
            # clear the flag first: an event landing while we compute marks it dirty again
            await self.usage.update({"_id": who}, {"$set": {"dirty": False}})
            usage = await (self.platform_usage() if who == ALL_USERS else self.user_usage(who))
            event = UsageUpdated(producer=self.name, correlation_id=f"usage:{who}", user=who, usage=usage)
            await self.usage.update({"_id": who}, {"$set": {"current": usage}, "$push": outbox_push([event])})
            await self.relay.flush(self.usage.raw, who)

    async def user_usage(self, user: str) -> dict[str, Any]:
        out = await self._job_counts({"user": user})
        out["datasize"] = await self._datasize({"user": user, "deleted": False})
        out["jobsize"] = await self._jobsize(user, self.settings.jobs_dir / safe_user(user))
        out["timestamp"] = utcnow().isoformat()
        return out

    async def platform_usage(self) -> dict[str, Any]:
        out = await self._job_counts({})
        out["nusers"] = await self.usage.count({"_id": {"$ne": ALL_USERS}})
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
