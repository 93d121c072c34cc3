"""The scheduler: JobSubmitted → start the job on its platform's backend, at most once; cancel it on request.

One ``dispatches`` document per job is both the idempotency key (a redelivered JobSubmitted finds
it) and the outbox of JobDispatched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel

from cirasa.backends.base import (
    Backend,
    BackendUnavailable,
    DiscoveredJob,
    Discovering,
    JobSpec,
    TrackedJob,
)
from cirasa.backends.factory import make_backend
from cirasa.common.events import CancelRequested, JobDispatched, JobSubmitted, as_utc, utcnow
from cirasa.common.metrics import BACKEND_ERRORS
from cirasa.common.outbox import queue_claimed
from cirasa.common.paths import job_dir_for, resolve_under
from cirasa.common.service import Loop, Service, every
from cirasa.common.store.documents import Documents
from cirasa.finders.registry import get_app
from cirasa.scheduler.documents import DISPATCHES, WAITING, Dispatch
from cirasa.scheduler.staging import Staged, Stager, StagingFailed
from cirasa.scheduler.timing import MAX_ATTEMPTS, TRANSIENT, backoff, booked_wall_time, too_late

CLAIM_TTL = timedelta(seconds=60)


class Scheduler(Service):
    name: ClassVar[str] = "scheduler"
    outbox_collections: ClassVar[tuple[str, ...]] = (DISPATCHES,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatches = Documents(self.db[DISPATCHES], Dispatch)
        self._backends: dict[str, Backend] = {}
        self.stager = Stager(self.settings, self.bus.publish)

    def register(self) -> None:
        self.bus.subscribe(JobSubmitted, self.on_job_submitted)
        self.bus.subscribe(CancelRequested, self.on_cancel_requested)

    def backend(self, platform: str) -> Backend:
        if platform not in self._backends:
            self._backends[platform] = make_backend(self.settings.platform(platform), self.settings)
        return self._backends[platform]

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {DISPATCHES: [IndexModel([("state", ASCENDING), ("not_before", ASCENDING)])]}  # the due loop

    def loops(self) -> list[Loop]:
        return [self._due_loop]

    async def _due_loop(self, stop: asyncio.Event) -> None:
        await every(0.5, stop, self.dispatch_due)

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        not_before = as_utc(ev.start) if ev.start else utcnow()
        not_before -= timedelta(seconds=ev.staging_s)  # staged first, inside the job's booking
        doc = await self.dispatches.update_and_get(
            {"_id": ev.job_id},
            {
                "$set": {
                    "submitted": ev.model_dump(mode="json"),
                    "not_before": not_before,
                    "platform": ev.platform,  # also on a document a CancelRequested created
                    "backend": ev.backend,
                },
                "$setOnInsert": {
                    "state": "SUBMITTING",
                    "user": ev.user,
                    "job_dir": str(job_dir_for(ev.user, ev.job_id)),
                    "cancel_requested": False,
                    "outbox": [],
                    "created_at": utcnow(),
                },
            },
            upsert=True,
        )
        assert doc is not None  # upserted
        if not_before <= utcnow() and await self._claim(ev.job_id):
            await self._dispatch(ev, doc)
        # otherwise the offer starts later (or another delivery is on it): dispatch_due starts it

    async def dispatch_due(self) -> None:
        """Start jobs whose offered start has come (and any a crash left half-dispatched)."""
        due = self.dispatches.find({"state": {"$in": list(WAITING)}, "not_before": {"$lte": utcnow()}})
        async for doc in due:
            if doc.submitted and await self._claim(doc.id):
                await self._dispatch(doc.submitted, doc)

    async def _claim(self, job_id: str) -> bool:
        """One dispatcher at a time per job (this delivery, the due loop, another replica); a claim
        left by a crash lapses after CLAIM_TTL and the due loop takes the job up again."""
        now = utcnow()
        return await self.dispatches.update(
            {
                "_id": job_id,
                "state": {"$in": list(WAITING)},
                "$or": [{"claimed_at": None}, {"claimed_at": {"$lt": now - CLAIM_TTL}}],
            },
            {"$set": {"claimed_at": now}},
        )

    async def _dispatch(self, ev: JobSubmitted, doc: Dispatch) -> None:
        if doc.state not in WAITING:
            return  # already dispatched (or failed) by an earlier delivery
        now = utcnow()
        wall_time = booked_wall_time(ev, now)
        if doc.cancel_requested:
            await self._give_up(ev, doc, "Job canceled by user before it started", canceled=True)
            return
        if wall_time < 1:  # never run outside the booking
            await self._give_up(ev, doc, too_late(ev, now))
            return
        ev = ev.model_copy(update={"resources": ev.resources.model_copy(update={"duration_s": wall_time})})
        job_dir = resolve_under(self.settings.jobs_dir, doc.job_dir)
        staged = Staged()
        if ev.staging or ev.volumes:  # PREPARING
            try:
                async with self._holding_claim(ev.job_id):
                    staged = await self.stager.stage(ev, job_dir)
            except StagingFailed as exc:
                await self._finish(ev, doc, error=f"Job could not be started: staging failed: {exc}")
                return
            fresh = await self.dispatches.get(ev.job_id)
            if fresh is not None and fresh.cancel_requested:  # cancelled while its data was fetched
                await self._give_up(ev, doc, "Job canceled by user before it started", canceled=True)
                return
        try:
            spec = self._spec(ev, job_dir, staged)
            backend = self.backend(ev.platform)
            backend_job_id = await asyncio.to_thread(backend.submit, spec)
        except (BackendUnavailable, KeyError, ValueError) as exc:
            BACKEND_ERRORS.labels(ev.platform, "submit").inc()
            await self._finish(ev, doc, error=f"Job could not be started: {exc}")
            return
        except TRANSIENT as exc:  # no verdict: the job may have started, and submit is idempotent
            BACKEND_ERRORS.labels(ev.platform, "submit").inc()
            await self._retry_later(ev, doc, exc)
            return
        await self._finish(ev, doc, backend_job_id=backend_job_id)

    async def _retry_later(self, ev: JobSubmitted, doc: Dispatch, exc: Exception) -> None:
        """Release the claim; the due loop tries again after a back-off, MAX_ATTEMPTS times in all."""
        attempts = doc.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            error = f"Job could not be started ({attempts} attempts): {exc}"
            await self._give_up(ev, doc, error, retry=False)
            return
        self.log.warning("job.submit_retry", job_id=ev.job_id, attempts=attempts, error=repr(exc))
        await self.dispatches.update(
            {"_id": ev.job_id, "state": doc.state},
            {
                "$set": {"claimed_at": None, "not_before": utcnow() + backoff(attempts), "error": str(exc)},
                "$inc": {"attempts": 1},
            },
        )

    async def _give_up(
        self, ev: JobSubmitted, doc: Dispatch, error: str, *, canceled: bool = False, retry: bool = True
    ) -> None:
        """Record that the job does not start here. One an earlier dispatcher may have started is
        looked for on its backend first: found, it is recorded dispatched (the monitor follows it to
        its real end; a pending cancel is sent); not found, it is canceled there (best effort)."""
        if doc.maybe_started:
            try:
                found = await self._find_started(ev.platform, doc.id)
            except TRANSIENT as exc:
                if retry:
                    await self._retry_later(ev, doc, exc)
                    return
                found = None
            except (BackendUnavailable, KeyError) as exc:
                self.log.warning("job.discover_failed", job_id=doc.id, error=repr(exc))
                found = None
            if found is not None:
                await self._finish(ev, doc, backend_job_id=found.backend_job_id)
                return
            await self._cancel_quietly(ev, doc)
        await self._finish(ev, doc, error=error, canceled=canceled)

    async def _find_started(self, platform: str, job_id: str) -> DiscoveredJob | None:
        """The job on its platform, if the backend can list our jobs and knows it."""
        backend = self.backend(platform)
        if not isinstance(backend, Discovering):
            return None
        found = await asyncio.to_thread(backend.discover)
        return next((job for job in found if job.job_id == job_id), None)

    async def _cancel_quietly(self, ev: JobSubmitted, doc: Dispatch) -> None:
        """Stop a job an earlier dispatcher may have started (cancel is idempotent); best effort."""
        try:
            await self._cancel_backend(doc.model_copy(update={"platform": ev.platform}))
        except Exception as exc:  # the backend is away or never heard of the job
            self.log.warning("job.cancel_failed", job_id=doc.id, error=repr(exc))

    @contextlib.asynccontextmanager
    async def _holding_claim(self, job_id: str) -> AsyncIterator[None]:
        """Keep this dispatcher's claim on the job fresh while it stages (which may outlast CLAIM_TTL)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(CLAIM_TTL.total_seconds() / 3)
                await self.dispatches.update({"_id": job_id}, {"$set": {"claimed_at": utcnow()}})

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spec(self, ev: JobSubmitted, job_dir: Path, staged: Staged) -> JobSpec:
        if ev.image:  # a container executable from the ExecutionBroker API
            return JobSpec(
                ev.job_id,
                ev.user,
                ev.app,
                list(ev.command),
                job_dir,
                ev.resources,
                image=ev.image,
                untrusted=True,
                mounts=staged.mounts,
            )
        app = get_app(ev.app)
        if app is None:
            raise ValueError(f"unknown app {ev.app!r}")
        input_path, input_name = self._input(ev, staged)
        path = str(input_path)
        if app.runnable_without_container:
            argv = app.build_argv(ev.options, path, input_name)
            return JobSpec(
                ev.job_id,
                ev.user,
                app.name,
                argv,
                job_dir,
                ev.resources,
                inputs=(input_path,),
                untrusted=app.untrusted,
                mounts=staged.mounts,
            )
        image = self.settings.platform(ev.platform).containers.get(app.name)
        if image is None:
            raise ValueError(f"platform {ev.platform} declares no container image for app {app.name}")
        return JobSpec(
            ev.job_id,
            ev.user,
            app.name,
            app.container_args(ev.options, path),
            job_dir,
            ev.resources,
            image=image,
            inputs=(input_path,),
            mounts=staged.mounts,
        )

    def _input(self, ev: JobSubmitted, staged: Staged) -> tuple[Path, str]:
        """The app's one input: a notebook fetched by URL, or an uploaded file."""
        if staged.executable is not None:
            return staged.executable.resolve(), staged.executable.name
        if len(ev.inputs) != 1:
            raise ValueError(f"app {ev.app} takes exactly one input file, got {len(ev.inputs)}")
        input_path = resolve_under(self.settings.data_dir, ev.inputs[0].relpath)
        if not input_path.is_file():
            raise ValueError(f"input file {ev.inputs[0].file_id} is no longer available")
        return input_path.resolve(), ev.inputs[0].name

    async def _finish(
        self,
        ev: JobSubmitted,
        doc: Dispatch,
        *,
        backend_job_id: str | None = None,
        error: str | None = None,
        canceled: bool = False,
    ) -> None:
        event = JobDispatched(
            producer=self.name,
            correlation_id=ev.correlation_id,
            causation_id=ev.event_id,
            user=ev.user,
            job_id=ev.job_id,
            platform=ev.platform,
            backend=ev.backend,
            backend_job_id=backend_job_id,
            job_dir=doc.job_dir,
            duration_s=ev.resources.duration_s,
            error=error,
            canceled=canceled,
        )
        state = "CANCELED" if canceled else ("FAILED" if error else "DISPATCHED")
        queued = queue_claimed([event])
        applied = await self.dispatches.update(
            {"_id": ev.job_id, "state": doc.state},
            {
                "$set": {
                    "state": state,
                    "backend_job_id": backend_job_id,
                    "error": error,
                    "dispatched_at": utcnow(),
                },
                "$push": queued.push,
            },
        )
        if applied:  # else another dispatcher wrote (and publishes) its own outcome
            await self.relay.flush(self.dispatches.raw, ev.job_id, queued.entries)
        if state == "DISPATCHED":
            # a cancel may have arrived while the backend call was in flight
            fresh = await self.dispatches.get(ev.job_id)
            if fresh and fresh.cancel_requested:
                await self._cancel_backend(fresh)

    async def on_cancel_requested(self, ev: CancelRequested) -> None:
        doc = await self.dispatches.update_and_get(
            {"_id": ev.job_id},
            {
                "$set": {"cancel_requested": True},
                "$setOnInsert": {
                    "state": "CANCEL_BEFORE_START",
                    "user": ev.user,
                    "outbox": [],
                    "job_dir": str(job_dir_for(ev.user, ev.job_id)),
                    "created_at": utcnow(),
                },
            },
            upsert=True,
        )
        assert doc is not None  # upserted
        if doc.state == "DISPATCHED":
            await self._cancel_backend(doc)
        elif doc.submitted is None:
            await self._cancel_unknown(doc)

    async def _cancel_unknown(self, doc: Dispatch) -> None:
        """A cancel for a job we have no record of: the record now remembers it for a JobSubmitted
        still to come, but the job may also have been started before this scheduler lost its
        records. Its directory tells (every backend makes it before starting a job): then every
        platform is asked to cancel it by job id."""
        job_dir = resolve_under(self.settings.jobs_dir, doc.job_dir)
        if not job_dir.is_dir():
            return  # never handed to a backend
        for platform in self.settings.platforms:
            try:
                backend = self.backend(platform.name)
                await asyncio.to_thread(backend.cancel, TrackedJob(doc.id, None, job_dir))
            except Exception as exc:  # not there, or that backend is down: the others still try
                self.log.info(
                    "job.cancel_unknown_failed", job_id=doc.id, platform=platform.name, error=repr(exc)
                )
        self.log.warning("job.cancel_sent_without_record", job_id=doc.id)

    async def _cancel_backend(self, doc: Dispatch) -> None:
        if doc.platform is None:
            return  # never submitted, so never started
        job = TrackedJob(doc.id, doc.backend_job_id, resolve_under(self.settings.jobs_dir, doc.job_dir))
        try:
            await asyncio.to_thread(self.backend(doc.platform).cancel, job)
        except TRANSIENT as exc:  # the backend is away: the cancel waits for it, it is no poison message
            raise ConnectionError(f"platform {doc.platform} did not take the cancel: {exc}") from exc
        self.log.info("job.cancel_sent", job_id=doc.id)
