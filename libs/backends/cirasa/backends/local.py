"""Local compute backend: each job runs as a subprocess under its own supervisor (``local_runner``).

All job state lives in ``<job_dir>/.cirasa/``, so the service that starts jobs and the monitor that
reads them only need to share the filesystem:

* ``submitted`` -- created exclusively by :func:`start_local_job` (argv, resources, runner pid);
* ``state.json`` -- written atomically by the runner at every change;
* ``heartbeat`` -- touched by the runner about once a second;
* ``cancel`` -- created by :func:`request_local_cancel`, polled by the runner.

Liveness of a runner is checked by pid (``os.kill(pid, 0)`` plus ``/proc/<pid>/cmdline``) when the
reader is on the same host and in the same PID namespace as the runner; otherwise (e.g. monitor in
another container) a pid means nothing here, and a heartbeat older than :data:`RUNNER_STALE_S` is
taken as the runner's death instead.

Zombies: runners are started with ``subprocess.Popen`` (in a new session, so they outlive us) and the
``Popen`` objects are kept in a module-level set that is ``poll()``-ed -- i.e. reaped -- on every
call of this API. We chose this over a double fork because it keeps the real runner pid without a
pid hand-off through a pipe, and a dead runner lingers as a zombie only until the next API call. A
zombie is not mistaken for a live runner: ``/proc/<pid>/stat`` says ``Z``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from cirasa.backends.base import BackendStatus, BackendUnavailable, DiscoveredJob, JobSpec, TrackedJob
from cirasa.backends.local_runner import (
    CANCEL_FILE,
    CONTROL_DIR,
    DEFAULT_KILL_GRACE_S,
    HEARTBEAT_FILE,
    RUNNER_LOG,
    STATE_FILE,
    SUBMITTED_FILE,
    mount_option,
    process_origin,
    utc_now,
    write_json_atomic,
)
from cirasa.backends.sandbox import NOBODY, Sandbox, sandbox_available, sandbox_mounts
from cirasa.common.events import JobState

log = structlog.get_logger(__name__)

RUNNER_MODULE = "cirasa.backends.local_runner"
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "TIMED-OUT", "CANCELED"})
RUNNER_STALE_S = 30.0
"""Heartbeat age after which a runner we cannot check by pid is declared dead."""
SUBMIT_WAIT_S = 10.0
"""How long a losing concurrent :func:`start_local_job` waits for the winner to record its pid."""


class LocalOptions(BaseModel):
    """``options`` of a local platform."""

    model_config = ConfigDict(extra="forbid")

    sandbox: bool = Field(True, description="run every job in a bubblewrap sandbox (see sandbox.py)")
    sandbox_uid: int = Field(NOBODY, ge=1, description="the unprivileged uid and gid jobs run as")


_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()


@dataclass(frozen=True)
class LocalJobStatus:
    state: str
    pid: int | None
    runner_pid: int | None
    exit_code: int | None
    elapsed_s: float
    started_at: datetime | None
    finished_at: datetime | None
    status: str


def _reap_children() -> None:
    with _children_lock:
        for proc in [p for p in _children if p.poll() is not None]:
            _children.discard(proc)


def _control_dir(job_dir: Path) -> Path:
    return Path(job_dir) / CONTROL_DIR


def _read_json(path: Path) -> dict[str, Any] | None:
    """The document at ``path``; None when missing or not (yet) a complete JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# -- starting ----------------------------------------------------------------------------------


def _validate(argv: Sequence[str], cores: int, memory_gib: float, timeout_s: int) -> None:
    if isinstance(argv, str | bytes) or not argv:
        raise ValueError("argv must be a non-empty sequence of arguments")
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if memory_gib <= 0:
        raise ValueError(f"memory_gib must be > 0, got {memory_gib}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")


def _recorded_runner_pid(control_dir: Path) -> int | None:
    for name in (SUBMITTED_FILE, STATE_FILE):
        doc = _read_json(control_dir / name)
        pid = _opt_int(doc.get("runner_pid")) if doc else None
        if pid is not None:
            return pid
    return None


def _spawn_runner(
    job_dir: Path,
    argv: Sequence[str],
    cores: int,
    memory_gib: float,
    timeout_s: int,
    kill_grace_s: float,
    sandbox: Sequence[str],
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", RUNNER_MODULE,
        "--job-dir", str(job_dir),
        "--cores", str(cores),
        "--memory-gib", repr(float(memory_gib)),
        "--timeout-s", str(timeout_s),
        "--kill-grace-s", repr(float(kill_grace_s)),
        *sandbox,
        "--", *argv,
    ]  # fmt: skip
    # The runner keeps our cwd, so a relative PYTHONPATH (development setups) still resolves.
    with open(job_dir / CONTROL_DIR / RUNNER_LOG, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def start_local_job(
    job_dir: Path,
    argv: Sequence[str],
    cores: int,
    memory_gib: float,
    timeout_s: int,
    *,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    sandbox: Sequence[str] = (),
    owner: str | None = None,
) -> int:
    """Start ``argv`` in ``job_dir`` under a detached runner and return the runner's pid.

    ``sandbox`` holds the runner's sandbox options (``--sandbox``, ``--input PATH``, ...); empty, the
    job runs with the runner's rights. ``owner`` (the job's user) is recorded for :func:`discover_local_jobs`.

    Idempotent: the ``submitted`` marker is created with O_EXCL, and whoever loses that race (or
    calls again later) gets the pid recorded by the winner instead of starting a second runner.
    """
    _validate(argv, cores, memory_gib, timeout_s)
    _reap_children()
    job_dir = Path(job_dir).resolve()
    control_dir = job_dir / CONTROL_DIR
    control_dir.mkdir(parents=True, exist_ok=True)
    marker = control_dir / SUBMITTED_FILE
    deadline = time.monotonic() + SUBMIT_WAIT_S
    while True:
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            pid = _recorded_runner_pid(control_dir)
            if pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise TimeoutError(f"{marker} exists but no runner pid was ever recorded") from None
            time.sleep(0.02)  # the winner is spawning right now (or failed and removes the marker)

    doc: dict[str, Any] = {
        "argv": list(argv),
        "sandboxed": bool(sandbox),
        "cores": cores,
        "memory_gib": memory_gib,
        "timeout_s": timeout_s,
        "submitted_at": utc_now().isoformat(),
        "owner": owner,
        "runner_pid": None,
        **process_origin(),
    }
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        proc = _spawn_runner(job_dir, argv, cores, memory_gib, timeout_s, kill_grace_s, sandbox)
    except BaseException:
        marker.unlink(missing_ok=True)  # nothing runs: let a retry submit again
        raise
    with _children_lock:
        _children.add(proc)
    write_json_atomic(marker, {**doc, "runner_pid": proc.pid})
    return proc.pid


# -- reading -----------------------------------------------------------------------------------


def _same_pid_namespace(origin: Mapping[str, Any]) -> bool:
    here = process_origin()
    return all(origin.get(key, here[key]) == here[key] for key in ("host", "pid_ns"))


def _pid_is_runner(pid: int) -> bool:
    """True when ``pid`` is a live local_runner (not a zombie, not a recycled pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if not cmdline:
            # Empty for zombies, but also for a moment while the runner's exec is still setting up
            # its arguments (observed right after Popen returned): only a zombie is dead.
            return _proc_state(pid) not in ("Z", "X", None)
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # /proc is mounted, so the process is gone
    except OSError:
        return True  # cannot tell; os.kill said it exists
    return b"local_runner" in cmdline  # guards against a recycled pid


def _proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (``Z`` for a zombie); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 1 :].split()  # the command name may contain spaces and ')'
    return fields[0] if fields else None


def _last_sign_of_life(control_dir: Path) -> float | None:
    for name in (HEARTBEAT_FILE, SUBMITTED_FILE):
        try:
            return (control_dir / name).stat().st_mtime
        except FileNotFoundError:
            continue
    return None


def _runner_alive(control_dir: Path, runner_pid: int, origin: Mapping[str, Any]) -> bool:
    if _same_pid_namespace(origin):
        return _pid_is_runner(runner_pid)
    last = _last_sign_of_life(control_dir)
    return last is not None and time.time() - last < RUNNER_STALE_S


def _status_from_state(doc: Mapping[str, Any]) -> LocalJobStatus:
    state = str(doc.get("state", "PENDING"))
    started_at = _opt_datetime(doc.get("started_at"))
    elapsed = doc.get("elapsed_s")
    elapsed_s = float(elapsed) if isinstance(elapsed, int | float) else 0.0
    if state == "RUNNING" and started_at is not None:
        elapsed_s = max(elapsed_s, (utc_now() - started_at).total_seconds())  # file is not rewritten
    return LocalJobStatus(
        state=state,
        pid=_opt_int(doc.get("pid")),
        runner_pid=_opt_int(doc.get("runner_pid")),
        exit_code=_opt_int(doc.get("exit_code")),
        elapsed_s=elapsed_s,
        started_at=started_at,
        finished_at=_opt_datetime(doc.get("finished_at")),
        status=str(doc.get("status", "")),
    )


def _vanished(
    control_dir: Path, doc: Mapping[str, Any], runner_pid: int | None, status: str
) -> LocalJobStatus:
    """FAILURE for a runner that died without a final record; its last heartbeat dates the death."""
    started_at = _opt_datetime(doc.get("started_at"))
    finished_at: datetime | None = None
    elapsed_s = 0.0
    last = _last_sign_of_life(control_dir) if started_at is not None else None
    if started_at is not None and last is not None:
        finished_at = max(started_at, datetime.fromtimestamp(last, UTC))
        elapsed_s = (finished_at - started_at).total_seconds()
    return LocalJobStatus(
        state="FAILURE",
        pid=_opt_int(doc.get("pid")),
        runner_pid=runner_pid,
        exit_code=None,
        elapsed_s=elapsed_s,
        started_at=started_at,
        finished_at=finished_at,
        status=status,
    )


def _pending(runner_pid: int | None) -> LocalJobStatus:
    return LocalJobStatus("PENDING", None, runner_pid, None, 0.0, None, None, "Waiting for the runner")


def read_local_status(job_dir: Path) -> LocalJobStatus | None:
    """The job's current status, or None when nothing was submitted in ``job_dir``."""
    _reap_children()
    control_dir = _control_dir(job_dir)
    marker_path = control_dir / SUBMITTED_FILE
    marker = _read_json(marker_path)
    if marker is None:
        if not marker_path.exists():
            return None
        marker = {}  # being written by start_local_job right now
    state = _read_json(control_dir / STATE_FILE)
    if state is not None and state.get("state") in FINAL_STATES:
        return _status_from_state(state)

    runner_pid = _opt_int(state.get("runner_pid")) if state is not None else None
    if runner_pid is None:
        runner_pid = _opt_int(marker.get("runner_pid"))
    if runner_pid is None:
        last = _last_sign_of_life(control_dir)
        if last is not None and time.time() - last > RUNNER_STALE_S:
            return _vanished(control_dir, {}, None, "Runner was never started")
        return _pending(None)
    if _runner_alive(control_dir, runner_pid, state or marker):
        return _status_from_state(state) if state is not None else _pending(runner_pid)

    # The runner may have written its final state and exited since we read: look again.
    state = _read_json(control_dir / STATE_FILE)
    if state is not None and state.get("state") in FINAL_STATES:
        return _status_from_state(state)
    return _vanished(control_dir, state or {}, runner_pid, "Runner process vanished")


def discover_local_jobs(jobs_dir: Path) -> list[DiscoveredJob]:
    """Every job started under ``jobs_dir`` (``<user dir>/job_<id>/.cirasa/submitted``)."""
    found: list[DiscoveredJob] = []
    for marker_path in Path(jobs_dir).glob(f"*/job_*/{CONTROL_DIR}/{SUBMITTED_FILE}"):
        job_dir = marker_path.parent.parent
        marker = _read_json(marker_path) or {}
        owner = marker.get("owner")
        timeout = marker.get("timeout_s")
        found.append(
            DiscoveredJob(
                job_id=job_dir.name.removeprefix("job_"),
                backend_job_id=str(pid) if (pid := _opt_int(marker.get("runner_pid"))) is not None else None,
                user=owner if isinstance(owner, str) else None,
                job_dir=f"{job_dir.parent.name}/{job_dir.name}",
                duration_s=float(timeout) if isinstance(timeout, int | float) else None,
            )
        )
    return found


# -- canceling ---------------------------------------------------------------------------------


def request_local_cancel(job_dir: Path) -> None:
    """Ask the runner to cancel the job; also SIGTERM a running job's process group right away.

    The marker is created even when nothing was submitted yet, so a later start is canceled
    before its process is started.
    """
    _reap_children()
    control_dir = _control_dir(job_dir)
    control_dir.mkdir(parents=True, exist_ok=True)
    (control_dir / CANCEL_FILE).touch(exist_ok=True)
    state = _read_json(control_dir / STATE_FILE)
    if state is None or state.get("state") != "RUNNING" or not _same_pid_namespace(state):
        return  # the runner acts on the marker within one poll interval
    pid = _opt_int(state.get("pid"))
    if pid is not None and pid > 0:
        # Already gone, or not ours to signal: either way the runner still honours the marker.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)


# -- Backend protocol (base.py) ----------------------------------------------------------------


class LocalBackend:
    """The functions above behind the :class:`~cirasa.backends.base.Backend` protocol.

    The backend job id is the runner's pid (as text); all state is found through the job dir.
    """

    kind = "local"

    def __init__(self, options: LocalOptions | None = None, jobs_dir: Path | None = None) -> None:
        self.options = options or LocalOptions()
        self.jobs_dir = jobs_dir  # where discover() looks; None: it finds nothing

    def submit(self, spec: JobSpec) -> str:
        res = spec.resources
        sandbox = self._sandbox_args(spec)
        return str(
            start_local_job(
                spec.job_dir,
                spec.argv,
                res.cores,
                res.memory_gib,
                res.duration_s,
                sandbox=sandbox,
                owner=spec.user,
            )
        )

    def _sandbox_args(self, spec: JobSpec) -> list[str]:
        """The runner's sandbox options; a job that needs a sandbox this host cannot make is refused,
        and so is a mount the sandbox cannot make (ValueError saying why)."""
        why_not = sandbox_available() if self.options.sandbox else "the platform's sandbox is switched off"
        if why_not is not None:
            if spec.untrusted:
                raise BackendUnavailable(f"user-supplied code runs only in a sandbox, and {why_not}")
            if spec.mounts:
                raise BackendUnavailable(
                    f"volumes are mounted at their targets only in a sandbox, and {why_not}"
                )
            log.warning("local.unsandboxed", job_id=spec.job_id, reason=why_not)
            return []
        args = ["--sandbox", "--sandbox-uid", str(self.options.sandbox_uid)]
        for path in spec.inputs:
            args += ["--input", str(path)]
        if spec.mounts:  # refused now rather than when the runner starts the job
            sandbox_mounts(Sandbox(Path(spec.job_dir), spec.inputs, mounts=spec.mounts))
        for mount in spec.mounts:
            args += ["--mount", mount_option(mount)]
        return args

    def cancel(self, job: TrackedJob) -> None:
        request_local_cancel(job.job_dir)

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        return {job.job_id: _backend_status(read_local_status(job.job_dir)) for job in jobs}

    def discover(self) -> list[DiscoveredJob]:
        return [] if self.jobs_dir is None else discover_local_jobs(self.jobs_dir)


def _backend_status(status: LocalJobStatus | None) -> BackendStatus | None:
    if status is None:
        return None
    return BackendStatus(
        state=JobState(status.state),
        status=status.status,
        exit_code=-1 if status.exit_code is None else status.exit_code,
        elapsed_s=status.elapsed_s,
        started_at=status.started_at,
        finished_at=status.finished_at,
    )
