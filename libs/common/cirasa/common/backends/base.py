"""The interface every compute backend offers the scheduler and the monitor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cirasa.common.events import JobState, Resources
from cirasa.common.settings import PlatformConfig, Settings


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


class BackendUnavailable(RuntimeError):
    """The platform's backend type is not implemented or not reachable."""


BackendFactory = Callable[[PlatformConfig, Settings], Backend]


def _local(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.common.backends.local import LocalBackend

    return LocalBackend()


def _kubernetes(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.common.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(platform, settings)


def _slurm(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.common.backends.slurm import SlurmBackend

    return SlurmBackend.from_platform(platform, settings)


# backend type -> factory; a backend type is offered by the planner only when it is listed here
FACTORIES: dict[str, BackendFactory] = {"local": _local, "kubernetes": _kubernetes, "slurm": _slurm}

# backend types that can run container images (see PlatformConfig.containers)
CONTAINER_BACKENDS: frozenset[str] = frozenset({"kubernetes", "slurm"})


def make_backend(platform: PlatformConfig, settings: Settings) -> Backend:
    factory = FACTORIES.get(platform.backend)
    if factory is None:
        raise BackendUnavailable(f"the {platform.backend} backend is not available in this release")
    return factory(platform, settings)
