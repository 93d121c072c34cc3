"""The gateway's state: user files, the jobs read model and usage, fed by events.

Writes that other services must hear about carry their event in the same document update
(outbox) and are flushed before the HTTP answer. A 202 means the job is stored with its proposal: if
the broker is away the outbox sweep publishes it later, and a proposal nobody answers is sent again
(``reproposal``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.backends.staging import StagingPolicy
from cirasa.common.events import (
    TERMINAL_STATES,
    CancelRequested,
    FileDeleted,
    FileUploaded,
    InputFile,
    JobStaging,
    JobState,
    JobStateChanged,
    JobSubmitted,
    OfferMade,
    OfferStateChanged,
    TaskProposed,
    UsageUpdated,
    new_id,
    utcnow,
)
from cirasa.common.outbox import queue_claimed
from cirasa.common.paths import safe_user
from cirasa.common.service import Loop, Service, every
from cirasa.common.store import Document
from cirasa.common.store.documents import Documents
from cirasa.finders.registry import App
from cirasa.gateway.admission import Admission
from cirasa.gateway.archive import contained_dir
from cirasa.gateway.broker.state import INDEXES as BROKER_INDEXES
from cirasa.gateway.broker.state import BrokerState
from cirasa.gateway.documents import FILES, JOBS, OFFERSETS, SESSIONS, USAGE, Job, StoredFile, Usage
from cirasa.gateway.idempotency import INDEXES as IDEMPOTENCY_INDEXES
from cirasa.gateway.idempotency import Idempotency
from cirasa.gateway.quotas import Quotas
from cirasa.gateway.read_model import JobsReadModel
from cirasa.gateway.reproposal import CHECK_INTERVAL_S, Reproposal
from cirasa.gateway.uploads import ReceivedFile

# What the caesar listings leave out of a stored document.
HIDDEN = {
    "_id": 0, "outbox": 0, "relpath": 0, "user": 0, "deleted": 0, "seq": 0,
    "proposal": 0, "checked_at": 0, "reproposed": 0, "early": 0,
}  # fmt: skip


CAESAR_JOBS_REMEMBERED = 100_000  # about 10 MB of ids; older ones are looked up as any other


@dataclass(frozen=True)
class NewJob:
    app: App
    options: dict[str, Any]
    job_inputs: Any
    file: StoredFile
    tag: Any
    walltime_s: int | None = None


class Gateway(Service):
    name: ClassVar[str] = "gateway"
    outbox_collections: ClassVar[tuple[str, ...]] = (FILES, JOBS, OFFERSETS, SESSIONS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.files = Documents(self.db[FILES], StoredFile)
        self.jobs = Documents(self.db[JOBS], Job)
        self.usage = Documents(self.db[USAGE], Usage)
        self.broker = BrokerState(self.db, self.name)
        self.quotas = Quotas(self.db, self.settings.gateway.quotas)
        self.idempotency = Idempotency(self.db)
        # what the platforms may fetch, checked once (a bad policy stops the start, as the scheduler's)
        self.staging_policy = StagingPolicy.model_validate(self.settings.staging.policy)
        gateway = self.settings.gateway
        self.reproposal = Reproposal(
            self.jobs,
            self.relay,
            self.quotas,
            self.name,
            gateway.repropose_after_s,
            gateway.repropose_attempts,
        )
        self.read_model = JobsReadModel(self.jobs, self.quotas)
        self.admission = Admission(gateway.admission_limit, gateway.admission_wait_s)
        # caesar jobs this process accepted, newest last: their ids are never an ExecutionBroker
        # proposal's, so their events need no look at the broker's sessions (two store calls a job)
        self._caesar_jobs: dict[str, None] = {}

    def indexes(self) -> dict[str, Sequence[IndexModel]]:
        return {
            FILES: [IndexModel([("user", ASCENDING), ("filedate", DESCENDING)])],
            JOBS: [
                IndexModel([("user", ASCENDING), ("submit_date", DESCENDING)]),
                IndexModel([("state", ASCENDING), ("checked_at", ASCENDING)]),  # the re-proposal sweep
            ],
            **BROKER_INDEXES,
            **IDEMPOTENCY_INDEXES,
        }

    def loops(self) -> list[Loop]:
        return [self._recount_loop, self._reproposal_loop]

    async def _reproposal_loop(self, stop: asyncio.Event) -> None:
        await every(CHECK_INTERVAL_S, stop, self.reproposal.sweep)

    async def _recount_loop(self, stop: asyncio.Event) -> None:
        await every(self.settings.gateway.quotas.recount_interval_s, stop, self.quotas.recount)

    def register(self) -> None:
        # both idempotent: the read model and the sessions change only for a newer seq, the offer
        # sets only from PENDING or by $setOnInsert / $addToSet, the quota only when the job ends
        self.bus.subscribe(JobStateChanged, self.on_job_state_changed, idempotent=True)
        self.bus.subscribe(OfferMade, self.on_offer_made, idempotent=True)
        self.bus.subscribe(OfferStateChanged, self.broker.on_offer_state_changed)
        self.bus.subscribe(JobSubmitted, self.on_job_submitted)
        self.bus.subscribe(UsageUpdated, self.on_usage_updated)
        self.bus.subscribe(JobStaging, self.on_job_staging)

    # --- read model (gateway/read_model.py) -------------------------------------------------

    async def on_job_state_changed(self, ev: JobStateChanged) -> None:
        self.admission.answered(ev.job_id)
        if ev.seq == 0 and ev.state is JobState.PENDING:  # the planner holds the job, still queued
            await self.reproposal.heard(ev.job_id, ev.status)
            return
        await self.read_model.on_job_state_changed(ev)
        if self._may_be_brokered(ev.job_id):
            await self.broker.on_job_state_changed(ev)

    async def on_job_submitted(self, ev: JobSubmitted) -> None:
        self.admission.answered(ev.correlation_id)
        if self._may_be_brokered(ev.correlation_id):
            await self.broker.on_job_submitted(ev)
        await self.read_model.on_job_submitted(ev)

    async def on_job_staging(self, ev: JobStaging) -> None:
        if self._may_be_brokered(ev.job_id):
            await self.broker.on_job_staging(ev)
        await self.read_model.on_job_staging(ev)

    async def on_offer_made(self, ev: OfferMade) -> None:
        self.admission.answered(ev.correlation_id)
        if self._may_be_brokered(ev.correlation_id):
            await self.broker.on_offer_made(ev)
        await self.read_model.on_offer_made(ev)

    def _may_be_brokered(self, proposal_id: str) -> bool:
        """False for a caesar job this process accepted; True (look) for anything else, such as a job
        another gateway replica accepted."""
        return proposal_id not in self._caesar_jobs

    def _accepted_caesar_job(self, job_id: str) -> None:
        self._caesar_jobs[job_id] = None
        if len(self._caesar_jobs) > CAESAR_JOBS_REMEMBERED:
            del self._caesar_jobs[next(iter(self._caesar_jobs))]

    async def on_usage_updated(self, ev: UsageUpdated) -> None:
        await self.usage.raw.update_one(
            {"_id": ev.user}, {"$set": {"usage": ev.usage, "at": ev.occurred_at}}, upsert=True
        )

    # --- files ----------------------------------------------------------------------------

    def user_dir(self, user: str) -> Path:
        return self.settings.data_dir / safe_user(user)

    async def register_file(self, user: str, received: ReceivedFile, fmt: str) -> StoredFile:
        try:
            await self.quotas.take_bytes(user, received.size_bytes)
        except Exception:
            received.discard()
            raise
        file_id = new_id()
        relpath = f"{safe_user(user)}/{file_id}.{fmt}"
        dest = self.settings.data_dir / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.tmp_path, dest)
        received.discard()
        uploaded = FileUploaded(
            producer=self.name,
            correlation_id=file_id,
            user=user,
            file_id=file_id,
            size_bytes=received.size_bytes,
        )
        queued = queue_claimed([uploaded])
        file = StoredFile(
            id=file_id,
            fileid=file_id,
            user=user,
            relpath=relpath,
            filename_orig=received.filename,
            fileext=fmt,
            filesize=received.size_bytes / 2**20,
            size_bytes=received.size_bytes,
            filedate=utcnow().isoformat(),
            metadata="",
            tag=received.tag,
            deleted=False,
            outbox=queued.entries,
        )
        try:
            await self.files.insert(file)
        except Exception:
            dest.unlink(missing_ok=True)
            await self.quotas.give_back(user, size=received.size_bytes)
            raise
        await self.relay.flush(self.files.raw, file_id, queued.entries)
        return file

    async def find_file(self, user: str, file_id: str) -> StoredFile | None:
        return await self.files.find_one({"_id": file_id, "user": user, "deleted": False})

    async def list_files(self, user: str) -> list[Document]:
        """The caesar listing: each file as stored, less what clients do not see."""
        cursor = self.files.raw.find({"user": user, "deleted": False}, HIDDEN | {"size_bytes": 0})
        return [d async for d in cursor.sort("filedate", ASCENDING)]

    async def delete_file(self, user: str, file: StoredFile) -> bool:
        event = FileDeleted(
            producer=self.name, correlation_id=file.id, user=user, file_id=file.id, size_bytes=file.size_bytes
        )
        queued = queue_claimed([event])
        deleted = await self.files.update(
            {"_id": file.id, "deleted": False},
            {"$set": {"deleted": True, "deleted_at": utcnow()}, "$push": queued.push},
        )
        if not deleted:
            return False
        (self.settings.data_dir / file.relpath).unlink(missing_ok=True)
        await self.quotas.give_back(user, size=file.size_bytes)
        await self.relay.flush(self.files.raw, file.id, queued.entries)
        return True

    # --- jobs -----------------------------------------------------------------------------

    async def submit_job(self, user: str, new: NewJob, job_id: str | None = None) -> Job:
        """Store the job with its proposal; an existing job of this id (a retry's) is returned as is."""
        job_id = job_id or new_id()
        resources = new.app.resources_for(new.options)
        proposal = TaskProposed(
            producer=self.name,
            correlation_id=job_id,
            user=user,
            app=new.app.name,
            options=new.options,
            inputs=[
                InputFile(
                    file_id=new.file.id,
                    relpath=new.file.relpath,
                    size_bytes=new.file.size_bytes,
                    name=new.file.filename_orig,
                )
            ],
            resources=resources
            if new.walltime_s is None
            else resources.model_copy(update={"duration_s": new.walltime_s}),
            auto_accept=self.settings.gateway.auto_accept,
            tag=new.tag if isinstance(new.tag, str) else str(new.tag),
        )
        queued = queue_claimed([proposal])
        job = Job(
            id=job_id,
            job_id=job_id,
            user=user,
            app=new.app.name,
            job_inputs=new.job_inputs,
            data_inputs=new.file.id,
            tag=new.tag,
            submit_date=utcnow().isoformat(),
            metadata="",
            state=JobState.PENDING.value,
            status="Job submitted and registered with success",
            seq=0,
            pid="",
            exit_code=-1,
            elapsed_time=0.0,
            platform=None,
            outbox=queued.entries,
            proposal=proposal.model_dump(mode="json"),
            checked_at=utcnow(),
            reproposed=0,
        )
        await self.admission.admit(job_id)  # waits while the planner is behind; Busy (503) if long
        try:
            await self.quotas.take_job(user)
        except Exception:
            self.admission.withdraw(job_id)
            raise
        try:
            await self.jobs.insert(job)
        except DuplicateKeyError:  # a concurrent retry with the same Idempotency-Key made it
            self.admission.withdraw(job_id)
            await self.quotas.give_back(user, jobs=1)
            existing = await self.find_job(user, job_id)
            if existing is None:
                raise
            return existing
        except Exception:
            self.admission.withdraw(job_id)
            await self.quotas.give_back(user, jobs=1)
            raise
        self._accepted_caesar_job(job_id)
        await self.relay.flush(self.jobs.raw, job_id, queued.entries)  # if the broker is away: the sweep
        return job

    async def find_job(self, user: str, job_id: str) -> Job | None:
        return await self.jobs.find_one({"_id": job_id, "user": user})

    async def list_jobs(self, user: str) -> list[Document]:
        """The caesar listing: each job as stored, less what clients do not see."""
        cursor = self.jobs.raw.find({"user": user}, HIDDEN)
        return [d async for d in cursor.sort("submit_date", ASCENDING)]

    async def request_cancel(self, user: str, job: Job) -> None:
        event = CancelRequested(producer=self.name, correlation_id=job.id, user=user, job_id=job.id)
        queued = queue_claimed([event])
        await self.jobs.update(
            {"_id": job.id}, {"$set": {"cancel_requested_at": utcnow()}, "$push": queued.push}
        )
        await self.relay.flush(self.jobs.raw, job.id, queued.entries)

    async def delete_job(self, user: str, job: Job) -> None:
        """Take the job off the user's lists; one still under way is cancelled first."""
        if job.state not in TERMINAL_STATES:
            await self.request_cancel(user, job)
        await self.jobs.update({"_id": job.id}, {"$set": {"deleted": True}})

    def job_dir(self, job: Job) -> Path:
        return self.settings.jobs_dir / safe_user(job.user) / f"job_{job.id}"

    def served_job_dir(self, job: Job) -> Path | None:
        """The job's directory when it exists and lies where jobs' directories may (else None)."""
        return contained_dir(self.settings.jobs_dir, self.job_dir(job))

    async def usage_for(self, user: str) -> dict[str, Any] | None:
        doc = await self.usage.get(user)
        return None if doc is None else doc.usage
