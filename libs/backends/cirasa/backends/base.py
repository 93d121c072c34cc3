"""The interface every compute backend offers the scheduler and the monitor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cirasa.common.events import JobState, Resources


@dataclass(frozen=True)
class Mount:
    """A staged volume: ``source`` (a file or directory on the platform's storage) seen by the job at
    ``target``, read-only unless ``read_only`` is False."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class JobSpec:
    """What the scheduler asks a backend to run.

    ``argv`` is the command for a Python-runner app; for a container app it is the argument list
    given to the image's entrypoint and ``image`` names the image (docker reference or .sif path).
    """

    job_id: str
    user: str
    app: str
    argv: list[str]
    job_dir: Path
    resources: Resources
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()  # files the job reads (read-only in its sandbox)
    untrusted: bool = False  # user-supplied code: runs only where a sandbox can hold it
    mounts: tuple[Mount, ...] = ()  # staged volumes (ExecutionBroker data and storage)


@dataclass(frozen=True)
class BackendStatus:
    """What a backend says about one job; ``state`` uses our vocabulary."""

    state: JobState
    status: str
    exit_code: int = -1
    elapsed_s: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TrackedJob:
    job_id: str
    backend_job_id: str | None
    job_dir: Path


class Backend(Protocol):
    kind: str

    def submit(self, spec: JobSpec) -> str:
        """Start the job at most once (idempotent per job id); return the backend's job id."""
        ...

    def cancel(self, job: TrackedJob) -> None: ...

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        """States of many jobs in one go; None for a job the backend does not know (vanished)."""
        ...


@dataclass(frozen=True)
class DiscoveredJob:
    """A job found on a backend by its name or label; the monitor follows those it does not know.

    ``job_dir`` is relative to the jobs root; ``user`` and ``job_dir`` are None when the backend
    does not record them (the monitor derives one from the other)."""

    job_id: str
    backend_job_id: str | None
    user: str | None = None
    job_dir: str | None = None
    duration_s: float | None = None


@runtime_checkable
class Discovering(Protocol):
    """What a backend that can list the jobs we started on it offers besides :class:`Backend`."""

    def discover(self) -> list[DiscoveredJob]:
        """Every job of ours the backend still knows, finished or not."""
        ...


class BackendUnavailable(RuntimeError):
    """The platform's backend type is not implemented or not reachable."""
