"""A simulated backend: jobs run, succeed, fail or overrun on simulated time; it records what ran when.

Each job reads its behaviour from its own command line (the ``sleep`` app's ``--seconds`` and
``--exit-code``); the backend kills a job at its wall-time limit (TIMED-OUT), as Slurm does. The
record of runs (start, end, cores) is the ground truth the invariants hold the services to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cirasa.backends.base import BackendStatus, DiscoveredJob, JobSpec, TrackedJob
from cirasa.cli.sim.faults import FaultPlan
from cirasa.common.events import JobState

RETENTION_S = 120.0  # a finished job's record is kept this long, then purged (as batch systems do)


@dataclass
class Run:
    """One start of a job on the backend."""

    job_id: str
    platform: str
    cores: int
    submitted: float
    start: float
    seconds: float  # how long the job would run if nothing stopped it
    limit: float  # its wall-time limit
    exit_code: int
    user: str = ""
    job_dir: str = ""  # relative to the jobs root
    canceled_at: float | None = None

    def natural_end(self) -> float:
        return self.start + min(self.seconds, self.limit)

    def end(self) -> float:
        if self.canceled_at is None:
            return self.natural_end()
        return min(self.natural_end(), max(self.canceled_at, self.start))

    def state(self, now: float) -> JobState:
        if now < self.start:
            return JobState.PENDING
        if now < self.end():
            return JobState.RUNNING
        if self.canceled_at is not None and self.canceled_at < self.natural_end():
            return JobState.CANCELED
        if self.seconds > self.limit:
            return JobState.TIMED_OUT
        return JobState.SUCCESS if self.exit_code == 0 else JobState.FAILURE


@dataclass
class BackendWorld:
    """Every simulated platform's runs, and the clock and faults they share."""

    clock: Callable[[], float]
    epoch: datetime
    faults: FaultPlan
    runs: dict[str, list[Run]] = field(default_factory=dict)  # job id -> every start of it
    submits: dict[str, int] = field(default_factory=dict)  # job id -> submit calls
    purged: set[str] = field(default_factory=set)

    def at(self, t: float) -> datetime:
        return self.epoch + timedelta(seconds=t)


def _option(argv: Sequence[str], name: str, default: float) -> float:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return float(arg.split("=", 1)[1])
    return default


class SimBackend:
    kind = "local"

    def __init__(self, world: BackendWorld, platform: str) -> None:
        self.world = world
        self.platform = platform

    def _fault(self, after: bool) -> None:
        kind = "backend_lost" if after else "backend_stall"
        if self.world.faults.strikes(kind):
            raise OSError(f"simulated backend fault: {kind}")

    def _current(self, job_id: str) -> Run | None:
        """The job's record, unless it was purged after its retention."""
        runs = self.world.runs.get(job_id)
        if not runs or job_id in self.world.purged:
            return None
        run = runs[-1]
        now = self.world.clock()
        if run.state(now).is_terminal and now - run.end() > RETENTION_S:
            self.world.purged.add(job_id)
            return None
        return run

    def submit(self, spec: JobSpec) -> str:
        self._fault(after=False)
        self.world.submits[spec.job_id] = self.world.submits.get(spec.job_id, 0) + 1
        if self._current(spec.job_id) is None:  # idempotent while the backend remembers the job
            now = self.world.clock()
            run = Run(
                job_id=spec.job_id,
                platform=self.platform,
                cores=spec.resources.cores,
                submitted=now,
                start=now,
                seconds=_option(spec.argv, "seconds", 1.0),
                limit=float(spec.resources.duration_s),
                exit_code=int(_option(spec.argv, "exit-code", 0)),
                user=spec.user,
                job_dir=f"{spec.job_dir.parent.name}/{spec.job_dir.name}",
            )
            spec.job_dir.mkdir(parents=True, exist_ok=True)  # as every backend does before starting
            self.world.purged.discard(spec.job_id)
            self.world.runs.setdefault(spec.job_id, []).append(run)
        self._fault(after=True)
        return f"sim-{spec.job_id}"

    def cancel(self, job: TrackedJob) -> None:
        self._fault(after=False)
        run = self._current(job.job_id)
        if run is not None and run.canceled_at is None and not run.state(self.world.clock()).is_terminal:
            run.canceled_at = self.world.clock()
        self._fault(after=True)

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        self._fault(after=False)
        out: dict[str, BackendStatus | None] = {}
        now = self.world.clock()
        for job in jobs:
            run = self._current(job.job_id)
            out[job.job_id] = None if run is None else self.status(run, now)
        self._fault(after=True)
        return out

    def discover(self) -> list[DiscoveredJob]:
        """Every job of ours this platform still remembers (the monitor adopts those it lost)."""
        self._fault(after=False)
        found = [
            DiscoveredJob(run.job_id, f"sim-{run.job_id}", run.user, run.job_dir, run.limit)
            for job_id, runs in sorted(self.world.runs.items())
            if (run := runs[-1]).platform == self.platform and self._current(job_id) is not None
        ]
        self._fault(after=True)
        return found

    def status(self, run: Run, now: float) -> BackendStatus:
        state = run.state(now)
        started = self.world.at(run.start) if now >= run.start else None
        ended = min(now, run.end())
        exit_code = {JobState.TIMED_OUT: 124, JobState.CANCELED: -15}.get(state, run.exit_code)
        return BackendStatus(
            state=state,
            status=f"simulated job {state.value}",
            exit_code=exit_code if state.is_terminal else -1,
            elapsed_s=max(ended - run.start, 0.0) if started else 0.0,
            started_at=started,
            finished_at=self.world.at(run.end()) if state.is_terminal else None,
        )
