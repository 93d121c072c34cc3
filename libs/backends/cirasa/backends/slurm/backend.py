"""The Slurm backend itself: submit idempotently, poll with one ``GET /jobs``, cancel, read capacity."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import structlog
from pydantic import ValidationError

from cirasa.backends.base import BackendStatus, DiscoveredJob, JobSpec, TrackedJob
from cirasa.backends.local_runner import STDERR_LOG
from cirasa.backends.slurm.capacity import SlurmCapacity, capacity_of
from cirasa.backends.slurm.client import SlurmClient, error_text
from cirasa.backends.slurm.errors import SlurmConfigError, SlurmError
from cirasa.backends.slurm.options import SlurmOptions
from cirasa.backends.slurm.script import JOB_NAME_PREFIX, SubmissionBuilder, job_name
from cirasa.backends.slurm.status import job_status
from cirasa.backends.stderr_reason import stderr_reason, with_reason
from cirasa.common.events import JobState
from cirasa.common.settings import PlatformConfig, Settings

log = structlog.get_logger(__name__)


class SlurmBackend:
    """:class:`~cirasa.backends.base.Backend` over slurmrestd. The backend job id is Slurm's."""

    kind = "slurm"

    def __init__(
        self,
        options: SlurmOptions,
        *,
        data_dir: Path,
        jobs_dir: Path,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._clock = clock
        self._client = SlurmClient(options, transport, clock)
        self._builder = SubmissionBuilder(options, data_dir=data_dir, jobs_dir=jobs_dir)

    @classmethod
    def from_platform(cls, platform: PlatformConfig, settings: Settings) -> SlurmBackend:
        try:
            options = SlurmOptions.model_validate(platform.options)
        except ValidationError as exc:
            raise SlurmConfigError(f"platform {platform.name}: invalid Slurm options: {exc}") from exc
        return cls(options, data_dir=settings.data_dir, jobs_dir=settings.jobs_dir)

    def close(self) -> None:
        self._client.close()

    # -- what is submitted -------------------------------------------------------------------------

    def submission(self, spec: JobSpec) -> dict[str, Any]:
        """The body of ``POST /job/submit`` for ``spec``."""
        return self._builder.submission(spec)

    def batch_script(self, spec: JobSpec) -> str:
        return self._builder.batch_script(spec)

    def cluster_word(self, word: str) -> str:
        """An argument with its path mapped to the cluster's."""
        return self._builder.cluster_word(word)

    # -- submit ------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        name = job_name(spec.job_id)
        # Idempotency: a redelivered JobSubmitted finds the job its first delivery started. Race window:
        # two submits of one job id running *at the same time* (two scheduler replicas given the same
        # message) can both find nothing and both submit. Slurm has no unique job names, so that is
        # closed after the fact: once submitted, we list again and every caller keeps the lowest job id
        # with this name (ids grow, so all callers agree) and cancels the others, which at that point
        # are almost always still pending. A record purged after MinJobAge cannot be found any more;
        # by then the monitor has long seen its final state.
        existing = self._named(self._client.list_jobs(), name)
        if existing:
            log.info("slurm.submit_found_existing", job_id=spec.job_id, slurm_job_id=existing[0])
            return str(existing[0])

        # slurmd needs the working directory (and the output files' directory) to exist
        Path(spec.job_dir).mkdir(parents=True, exist_ok=True)
        self._builder.link_volumes(spec)  # no mount namespace: the volumes are linked in the job dir
        reply = self._client.request("POST", "/job/submit", self._builder.submission(spec))
        slurm_id = reply.body.get("job_id")
        if reply.status_code >= 300 or reply.errors or not isinstance(slurm_id, int):
            if isinstance(slurm_id, int):
                # e.g. more CPUs than any node has: HTTP 200, an error, and a job pending forever
                self._client.delete(slurm_id)
            raise SlurmError(
                f"Slurm refused job {name}: HTTP {reply.status_code}: "
                f"{error_text(reply.errors) or 'no job id in the answer'}"
            )

        keep = self._named(self._client.list_jobs(), name) or [slurm_id]
        for duplicate in keep[1:]:
            log.warning("slurm.submit_duplicate_canceled", job_id=spec.job_id, slurm_job_id=duplicate)
            self._client.delete(duplicate)
        log.info("slurm.submitted", job_id=spec.job_id, slurm_job_id=keep[0])
        return str(keep[0])

    @staticmethod
    def _named(jobs: Sequence[Mapping[str, Any]], name: str) -> list[int]:
        return sorted(j["job_id"] for j in jobs if j.get("name") == name and isinstance(j.get("job_id"), int))

    # -- poll / cancel -----------------------------------------------------------------------------

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        if not jobs:
            return {}
        listing = self._client.list_jobs()
        by_id = {str(j.get("job_id")): j for j in listing}
        now = self._clock()
        out: dict[str, BackendStatus | None] = {}
        for job in jobs:
            name = JOB_NAME_PREFIX + job.job_id
            record: dict[str, Any] | None
            if job.backend_job_id is not None:
                record = by_id.get(job.backend_job_id)
                if record is not None and record.get("name") != name:
                    record = None  # the id was reused (slurmctld lost its state): not our job any more
            else:
                ids = self._named(listing, name)
                record = by_id.get(str(ids[0])) if ids else None
            out[job.job_id] = None if record is None else _with_stderr(job_status(record, now), job)
        return out

    def cancel(self, job: TrackedJob) -> None:
        if job.backend_job_id is not None:
            ids = [int(job.backend_job_id)]
        else:
            ids = self._named(self._client.list_jobs(), JOB_NAME_PREFIX + job.job_id)
        for slurm_id in ids:
            self._client.delete(slurm_id)

    def discover(self) -> list[DiscoveredJob]:
        """Our jobs Slurm still lists, by name (``cirasa-<job id>``); the user is the name of the job
        directory's parent (a ``safe_user`` name)."""
        found: list[DiscoveredJob] = []
        for record in self._client.list_jobs():
            name, slurm_id = record.get("name"), record.get("job_id")
            if (
                not isinstance(name, str)
                or not name.startswith(JOB_NAME_PREFIX)
                or not isinstance(slurm_id, int)
            ):
                continue
            job_id = name.removeprefix(JOB_NAME_PREFIX)
            cwd = PurePosixPath(str(record.get("current_working_directory") or ""))
            limit = record.get("time_limit")
            minutes = limit.get("number") if isinstance(limit, dict) else limit
            found.append(
                DiscoveredJob(
                    job_id=job_id,
                    backend_job_id=str(slurm_id),
                    job_dir=f"{cwd.parent.name}/{cwd.name}" if cwd.name == f"job_{job_id}" else None,
                    duration_s=float(minutes) * 60 if isinstance(minutes, int | float) else None,
                )
            )
        return found

    # -- capacity ----------------------------------------------------------------------------------

    def capacity(self) -> SlurmCapacity:
        """Free resources and the queue of the configured partition (all partitions when none is set),
        from ``GET /nodes`` and ``GET /jobs``. Needs API v0.0.37 or newer for exact figures (v0.0.36
        nodes carry no allocation or partitions)."""
        return capacity_of(self._client.list_nodes(), self._client.list_jobs(), self.options.partition)


def _with_stderr(status: BackendStatus, job: TrackedJob) -> BackendStatus:
    """A FAILURE says what the job last wrote to its stderr, where this side of the cluster's shared
    filesystem can read the file (the job directory as the service sees it)."""
    if status.state is not JobState.FAILURE:
        return status
    return replace(status, status=with_reason(status.status, stderr_reason(job.job_dir / STDERR_LOG)))
