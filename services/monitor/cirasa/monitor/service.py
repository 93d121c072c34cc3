"""The monitor: polls backends (one batched call per platform per cycle) → JobStateChanged.

It is the one producer of JobStateChanged for dispatched jobs, so it owns the per-job ``seq``.
Every transition is a conditional update on the stored ``seq`` (two replicas cannot both apply
one) carrying its event in the same write (outbox). Reconciliation ends jobs the backend lost and
jobs that were never dispatched, and discovery adopts jobs the backends run that we have no record
of (``discovery``), so nothing stays PENDING or RUNNING forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pymongo import ASCENDING, IndexModel

from cirasa.backends.base import Backend, BackendStatus, BackendUnavailable, TrackedJob
from cirasa.backends.factory import make_backend
from cirasa.common.events import (
    CancelRequested,
    Event,
    JobDispatched,
    JobState,
    JobStateChanged,
    JobSubmitted,
    as_utc,
    utcnow,
)
from cirasa.common.metrics import BACKEND_ERRORS, JOB_TRANSITIONS, START_DELAY, SUBMIT_TO_START
from cirasa.common.outbox import queue_claimed
from cirasa.common.paths import resolve_under
from cirasa.common.service import Loop, Service, every
from cirasa.common.store.documents import Documents
from cirasa.monitor.discovery import DISCOVER_INTERVAL_S, Discovery
from cirasa.monitor.documents import ACTIVE, JOBS, MonitoredJob
from cirasa.monitor.gauges import ActiveJobsGauge


class Monitor(Service):
    name: ClassVar[str] = "monitor"
    outbox_collections: ClassVar[tuple[str, ...]] = (JOBS,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jobs = Documents(self.db[JOBS], MonitoredJob)
        self._backends: dict[str, Backend] = {}
        self.discovery = Discovery(self.jobs, self.settings.platforms, self._backend, self.log)
        self.active_jobs = ActiveJobsGauge(p.name for p in self.settings.platforms)

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {JOBS: [IndexModel([("state", ASCENDING), ("dispatched", ASCENDING)])]}

    def register(self) -> None:
        self.bus.subscribe(JobSubmitted, self.on_job_submitted)
        self.bus.subscribe(JobDispatched, self.on_job_dispatched)

    def loops(self) -> list[Loop]:
        return [self._poll_loop, self._reconcile_loop, self._discover_loop]

    async def _discover_loop(self, stop: asyncio.Event) -> None:
        await every(DISCOVER_INTERVAL_S, stop, self.discovery.run)  # at once on start, then now and then

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        await every(self.settings.monitor.poll_interval_s, stop, self.poll)

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        await every(self.settings.monitor.reconcile_interval_s, stop, self.reconcile)

    # --- handlers -------------------------------------------------------------------------

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        await self.jobs.update(
            {"_id": ev.job_id},
            {
                "$set": {
                    "user": ev.user,
                    "app": ev.app,
                    "platform": ev.platform,
                    "backend": ev.backend,
                    "duration_s": ev.resources.duration_s,
                    "submitted_at": ev.occurred_at,
                    "not_before": max(as_utc(ev.start), ev.occurred_at) if ev.start else ev.occurred_at,
                },
                "$setOnInsert": {**MonitoredJob.on_insert(), "dispatched": False},
            },
            upsert=True,
        )

    async def on_job_dispatched(self, ev: JobDispatched) -> None:
        """Dispatch news may overtake JobSubmitted (different queues): both upsert."""
        doc = await self.jobs.update_and_get(
            {"_id": ev.job_id},
            {
                "$set": {
                    "dispatched": True,
                    "backend_job_id": ev.backend_job_id,
                    "job_dir": ev.job_dir,
                    "platform": ev.platform,
                    "backend": ev.backend,
                    "user": ev.user,
                    "duration_s": ev.duration_s,
                    "dispatched_at": ev.occurred_at,
                },
                "$setOnInsert": MonitoredJob.on_insert(),
            },
            upsert=True,
        )
        if doc is None:
            return
        if ev.error:
            state = JobState.CANCELED if ev.canceled else JobState.FAILURE
            await self.transition(doc, BackendStatus(state, ev.error, exit_code=-1), ev)
        elif doc.state in (s.value for s in JobState if s.is_terminal):
            # we already gave up on this job (reconciliation); do not let it run unaccounted
            await self.bus.publish(
                CancelRequested(
                    producer=self.name,
                    correlation_id=ev.job_id,
                    causation_id=ev.event_id,
                    user=ev.user,
                    job_id=ev.job_id,
                    reason=f"Job was already {doc.state} when it was dispatched",
                )
            )

    # --- polling --------------------------------------------------------------------------

    async def poll(self) -> None:
        by_platform: dict[str, list[MonitoredJob]] = defaultdict(list)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        async for doc in self.jobs.find({"state": {"$in": ACTIVE}}):
            counts[(doc.platform or "?", doc.state)] += 1
            if doc.dispatched:
                by_platform[doc.platform or "?"].append(doc)
        self.active_jobs.publish(counts)
        for platform, docs in by_platform.items():
            try:
                backend = self._backend(platform)
            except (BackendUnavailable, KeyError) as exc:
                for doc in docs:
                    await self.transition(doc, BackendStatus(JobState.FAILURE, str(exc)))
                continue
            tracked = [self._tracked(d) for d in docs]
            try:
                statuses = await asyncio.to_thread(backend.poll, tracked)
            except Exception as exc:  # one platform down must not stop the others' polling
                BACKEND_ERRORS.labels(platform, "poll").inc()
                self.log.warning("backend.poll_failed", platform=platform, error=repr(exc))
                continue
            for doc in docs:
                status = statuses.get(doc.id)
                if status is None:
                    await self.transition(
                        doc,
                        BackendStatus(
                            JobState.FAILURE, "Job vanished from its backend (no record of it is left)"
                        ),
                    )
                elif status.state.value != doc.state:
                    await self.transition(doc, status)

    async def reconcile(self) -> None:
        """End jobs that were never dispatched or overran their wall time by far."""
        now = utcnow()
        cfg = self.settings.monitor
        async for doc in self.jobs.find({"state": {"$in": ACTIVE}}):
            # a job offered for later is not late before its start
            created = as_utc(doc.not_before or doc.submitted_at or doc.created_at or now)
            if not doc.dispatched and now - created > timedelta(seconds=cfg.submit_timeout_s):
                await self.transition(
                    doc,
                    BackendStatus(
                        JobState.FAILURE,
                        f"Job was not dispatched by the scheduler within {cfg.submit_timeout_s:g} s",
                    ),
                )
            elif doc.state == JobState.RUNNING.value and doc.started_at:
                limit = timedelta(seconds=doc.duration_s + 60)
                if now - as_utc(doc.started_at) > limit:
                    await asyncio.to_thread(self._backend(doc.platform).cancel, self._tracked(doc))
                    await self.transition(
                        doc,
                        BackendStatus(
                            JobState.TIMED_OUT,
                            "Job overran its wall-time limit and was stopped by reconciliation",
                            exit_code=124,
                        ),
                    )
            elif (
                doc.state == JobState.PENDING.value
                and doc.dispatched_at
                and now - as_utc(doc.dispatched_at) > timedelta(seconds=self._start_timeout(doc))
            ):
                with contextlib.suppress(Exception):  # the backend may not know it any more
                    await asyncio.to_thread(self._backend(doc.platform).cancel, self._tracked(doc))
                await self.transition(
                    doc,
                    BackendStatus(
                        JobState.FAILURE,
                        f"Job did not start within {self._start_timeout(doc):g} s of dispatch",
                    ),
                )

    def _start_timeout(self, doc: MonitoredJob) -> float:
        """A platform's own start timeout (a busy batch queue needs a long one), or the monitor's."""
        for platform in self.settings.platforms:
            if platform.name == doc.platform and platform.start_timeout_s is not None:
                return platform.start_timeout_s
        return self.settings.monitor.start_timeout_s

    # --- transitions ----------------------------------------------------------------------

    async def transition(self, doc: MonitoredJob, status: BackendStatus, cause: Event | None = None) -> None:
        """Apply a backend status; a final state reached from PENDING passes through RUNNING."""
        if status.state.is_terminal and doc.state == JobState.PENDING.value and status.started_at is not None:
            running = BackendStatus(JobState.RUNNING, "Job is running", started_at=status.started_at)
            applied = await self._apply(doc, running, cause)
            if applied is None:
                return
            doc = applied
        await self._apply(doc, status, cause)

    async def _apply(
        self, doc: MonitoredJob, status: BackendStatus, cause: Event | None
    ) -> MonitoredJob | None:
        seq = doc.seq + 1
        event = JobStateChanged(
            producer=self.name,
            correlation_id=doc.id,
            causation_id=cause.event_id if cause else None,
            user=doc.user,
            job_id=doc.id,
            platform=doc.platform,
            state=status.state,
            status=status.status,
            exit_code=status.exit_code,
            elapsed_s=status.elapsed_s,
            started_at=status.started_at,
            finished_at=status.finished_at,
            seq=seq,
            app=doc.app,
        )
        changes: dict[str, Any] = {
            "state": status.state.value,
            "status": status.status,
            "seq": seq,
            "exit_code": status.exit_code,
            "elapsed_s": status.elapsed_s,
        }
        if status.started_at is not None:
            changes["started_at"] = status.started_at
        queued = queue_claimed([event])
        applied = await self.jobs.update(
            {"_id": doc.id, "seq": doc.seq, "state": {"$in": ACTIVE}},
            {"$set": changes, "$push": queued.push},
        )
        if not applied:
            return None  # another replica got there first, or the job is already final
        JOB_TRANSITIONS.labels(status.state.value).inc()
        if status.state is JobState.RUNNING and status.started_at:
            platform, started = doc.platform or "?", as_utc(status.started_at)
            if doc.submitted_at:
                SUBMIT_TO_START.labels(platform).observe(
                    max((started - as_utc(doc.submitted_at)).total_seconds(), 0)
                )
            if doc.not_before:
                START_DELAY.labels(platform).observe(
                    max((started - as_utc(doc.not_before)).total_seconds(), 0)
                )
        self.log.info("job.state_changed", job_id=doc.id, state=status.state.value, seq=seq)
        await self.relay.flush(self.jobs.raw, doc.id, queued.entries)
        return doc.model_copy(update=changes)

    def _backend(self, platform: str | None) -> Backend:
        if platform is None:
            raise KeyError("the job names no platform")
        if platform not in self._backends:
            self._backends[platform] = make_backend(self.settings.platform(platform), self.settings)
        return self._backends[platform]

    def _tracked(self, doc: MonitoredJob) -> TrackedJob:
        if doc.job_dir is None:
            raise KeyError(f"job {doc.id} has no job directory yet")
        return TrackedJob(doc.id, doc.backend_job_id, resolve_under(self.settings.jobs_dir, doc.job_dir))
