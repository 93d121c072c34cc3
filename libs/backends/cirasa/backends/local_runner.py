"""Supervisor process for one local job.

Run as::

    python -m cirasa.backends.local_runner --job-dir DIR --cores N --memory-gib G \\
        --timeout-s S [--kill-grace-s K] \\
        [--sandbox [--sandbox-uid U] [--input PATH]... [--mount JSON]...] -- ARGV...

It starts ARGV in DIR (with ``--sandbox``, inside a bubblewrap sandbox: ``sandbox.py``) and records
the job's life in ``DIR/.cirasa/state.json`` so that any process sharing the filesystem (the monitor
service) can follow it. The file is replaced atomically at each
change, so readers never see a half-written document.

Each ``--mount`` is one staged volume, as a JSON object (so that any path, colons and all, passes
intact): ``{"source": "/abs/source", "target": "/data/sky.fits", "mode": "ro"}``, ``mode`` ``ro`` or
``rw`` (:func:`mount_option` writes it). A mount the sandbox cannot make fails the job at its start.

Exit codes recorded for the job (``exit_code``):

* the child's own code: 0 is SUCCESS, > 0 is FAILURE;
* ``-signum`` when the child was killed by a signal it did not get from us (FAILURE);
* 124 when the wall-time limit was hit (TIMED-OUT) -- the convention of coreutils ``timeout``;
* -1 when the job was canceled (CANCELED);
* 127 when ARGV could not be started at all (FAILURE) -- the shell's "command not found".

The runner itself exits 0 once it has recorded a final state, 2 on bad usage and 1 when it failed
internally (after a best-effort FAILURE record). It imports only the standard library on purpose:
it must start fast and must not depend on the service's third-party packages (``sandbox``,
``mounts``, ``font_cache`` and ``stderr_reason`` are standard library too).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from cirasa.backends.mounts import MountLike, VolumeMount
from cirasa.backends.sandbox import CONTROL_DIR, NOBODY, Sandbox, prepare_job_dir, sandbox_argv
from cirasa.backends.stderr_reason import stderr_reason, with_reason

STATE_FILE = "state.json"
CANCEL_FILE = "cancel"
SUBMITTED_FILE = "submitted"
HEARTBEAT_FILE = "heartbeat"
RUNNER_LOG = "runner.log"
STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"

TIMEOUT_EXIT_CODE = 124
CANCEL_EXIT_CODE = -1
START_FAILURE_EXIT_CODE = 127

POLL_INTERVAL_S = 0.1
HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_KILL_GRACE_S = 5.0

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

_PR_SET_PDEATHSIG = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; the monitor may run as another user and must be able to read it.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def process_origin() -> dict[str, str | None]:
    """Identify this host and PID namespace; a pid is only meaningful to readers sharing both."""
    try:
        pid_ns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {"host": socket.gethostname(), "pid_ns": pid_ns}


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class Supervisor:
    """Starts one child, watches it, and keeps ``state.json`` up to date."""

    def __init__(
        self,
        job_dir: Path,
        argv: Sequence[str],
        cores: int,
        memory_gib: float,
        timeout_s: float,
        kill_grace_s: float,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.job_dir = job_dir
        self.sandbox = sandbox
        self.control_dir = job_dir / CONTROL_DIR
        self.argv = list(argv)
        self.cores = cores
        self.memory_bytes = int(memory_gib * 2**30)
        self.timeout_s = timeout_s
        self.kill_grace_s = kill_grace_s
        self.stop_requested = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: datetime | None = None
        self._t0 = 0.0
        self._origin = process_origin()
        self._libc = _load_libc()
        self._next_heartbeat = 0.0
        self._runner_pid = os.getpid()

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_stop)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the poll loop does the work, so no state is written from a handler.
        self.stop_requested = True

    # -- state file ----------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0 if self.started_at is not None else 0.0

    def _write_state(
        self, state: str, status: str, exit_code: int | None = None, final: bool = False
    ) -> None:
        doc = {
            "state": state,
            "runner_pid": os.getpid(),
            "pid": self.proc.pid if self.proc is not None else None,
            "started_at": self.started_at.isoformat() if self.started_at is not None else None,
            "finished_at": utc_now().isoformat() if final else None,
            "exit_code": exit_code,
            "elapsed_s": round(self._elapsed(), 3),
            "status": status,
            **self._origin,
        }
        write_json_atomic(self.control_dir / STATE_FILE, doc)
        print(f"{utc_now().isoformat()} {state}: {status}", file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        """Touch the heartbeat file; readers in another PID namespace judge liveness by its age."""
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + HEARTBEAT_INTERVAL_S
        path = self.control_dir / HEARTBEAT_FILE
        try:
            os.utime(path)
        except FileNotFoundError:
            path.touch()

    def _cancel_requested(self) -> bool:
        return (self.control_dir / CANCEL_FILE).exists()

    # -- child ---------------------------------------------------------------------------------

    def _child_setup(self) -> None:
        """Runs in the forked child before exec (the runner is single-threaded, so this is safe)."""
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = self.memory_bytes if hard == resource.RLIM_INFINITY else min(self.memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if self._libc is not None:
            # If the runner dies (e.g. SIGKILL) the job must not run on unsupervised.
            self._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self._runner_pid:
                os._exit(1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        if not self.argv:
            raise ValueError("empty command line")
        threads = {name: str(self.cores) for name in THREAD_ENV_VARS}
        argv, env = self.argv, {**os.environ, **threads}
        if self.sandbox is not None:
            box = replace(self.sandbox, env={**self.sandbox.env, **threads})
            prepare_job_dir(box)
            argv = sandbox_argv(box, self.argv, share_font_list=True)
        with (
            open(self.job_dir / STDOUT_LOG, "wb") as out,
            open(self.job_dir / STDERR_LOG, "wb") as err,
        ):
            return subprocess.Popen(
                argv,
                cwd=self.job_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                preexec_fn=self._child_setup,
            )

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the child's group, wait up to the grace period, then SIGKILL whatever is left."""
        signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        while time.monotonic() < deadline:
            # A zombie leader still holds the group, so reap first, then check the group is empty.
            if proc.poll() is not None and not signal_group(proc.pid, 0):
                return
            time.sleep(POLL_INTERVAL_S / 2)
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def _verdict_for_exit(self, returncode: int) -> tuple[str, int, str]:
        if self._cancel_requested():
            # request_local_cancel() may have signalled the child directly: still a cancel.
            return "CANCELED", CANCEL_EXIT_CODE, "Job canceled by user"
        if self.stop_requested:
            return "CANCELED", CANCEL_EXIT_CODE, "Runner was stopped"
        if returncode == 0:
            return "SUCCESS", 0, "Process terminated with success"
        # what the job last said on its stderr is why it failed, for the user
        reason = stderr_reason(self.job_dir / STDERR_LOG)
        if returncode < 0:
            return "FAILURE", returncode, with_reason(f"Process terminated with SIG {-returncode}", reason)
        return "FAILURE", returncode, with_reason(f"Process terminated with return code {returncode}", reason)

    def _supervise(self, proc: subprocess.Popen[bytes]) -> tuple[str, int, str]:
        while True:
            returncode = proc.poll()
            if returncode is not None:
                return self._verdict_for_exit(returncode)
            if self.stop_requested:
                self._kill_group(proc)
                return "CANCELED", CANCEL_EXIT_CODE, "Runner was stopped"
            if self._cancel_requested():
                self._kill_group(proc)
                return "CANCELED", CANCEL_EXIT_CODE, "Job canceled by user"
            if self._elapsed() > self.timeout_s:
                self._kill_group(proc)
                limit = f"Job exceeded its wall-time limit of {self.timeout_s:g} s"
                return "TIMED-OUT", TIMEOUT_EXIT_CODE, limit
            self._heartbeat()
            time.sleep(POLL_INTERVAL_S)

    # -- main ----------------------------------------------------------------------------------

    def run(self) -> int:
        self.control_dir.mkdir(parents=True, exist_ok=True)
        self._heartbeat()
        if self.stop_requested or self._cancel_requested():
            status = "Runner was stopped" if self.stop_requested else "Job canceled by user"
            self._write_state("CANCELED", status, CANCEL_EXIT_CODE, final=True)
            return 0
        try:
            proc = self._spawn()
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.started_at = utc_now()
            self._t0 = time.monotonic()
            self._write_state(
                "FAILURE", f"Could not start process: {exc}", START_FAILURE_EXIT_CODE, final=True
            )
            return 0
        self.proc = proc
        self.started_at = utc_now()
        self._t0 = time.monotonic()
        self._write_state("RUNNING", "Process is running")
        state, exit_code, status = self._supervise(proc)
        # Leftovers of the job (background processes in its group) must not outlive it.
        signal_group(proc.pid, signal.SIGKILL)
        self._write_state(state, status, exit_code, final=True)
        return 0

    def crash(self, exc: BaseException) -> None:
        """Best effort after an internal error: stop the child and leave a FAILURE record."""
        traceback.print_exception(exc, file=sys.stderr)
        if self.proc is not None and self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGKILL)
        try:
            self._write_state("FAILURE", f"Runner error: {exc!r}", None, final=True)
        except OSError:
            traceback.print_exc(file=sys.stderr)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def mount_option(mount: MountLike) -> str:
    """The value of ``--mount`` for ``mount``."""
    mode = "ro" if mount.read_only else "rw"
    return json.dumps({"source": str(mount.source), "target": mount.target, "mode": mode})


def parse_mount_option(text: str) -> VolumeMount:
    """The mount a ``--mount`` value describes."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--mount takes a JSON object: {exc}") from None
    if (
        not isinstance(doc, dict)
        or set(doc) != {"source", "target", "mode"}
        or not all(isinstance(doc[key], str) for key in ("source", "target"))
        or doc["mode"] not in ("ro", "rw")
    ):
        raise argparse.ArgumentTypeError(
            f'--mount takes {{"source": PATH, "target": PATH, "mode": "ro" or "rw"}}, got {text}'
        )
    return VolumeMount(Path(doc["source"]), doc["target"], read_only=doc["mode"] == "ro")


def parse_args(args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options come before ``--``; everything after it is the job's ARGV, taken verbatim."""
    parser = argparse.ArgumentParser(prog="python -m cirasa.backends.local_runner")
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument("--cores", type=_positive(int), required=True)
    parser.add_argument("--memory-gib", type=_positive(float), required=True)
    parser.add_argument("--timeout-s", type=_positive(float), required=True)
    parser.add_argument("--kill-grace-s", type=float, default=DEFAULT_KILL_GRACE_S)
    parser.add_argument("--sandbox", action="store_true", help="run the job in a bubblewrap sandbox")
    parser.add_argument("--sandbox-uid", type=int, default=NOBODY, help="the job's uid and gid there")
    parser.add_argument("--input", type=Path, action="append", default=[], help="read-only in the sandbox")
    parser.add_argument(
        "--mount", type=parse_mount_option, action="append", default=[], help="a volume in the sandbox"
    )
    args = list(args)
    if "--" not in args:
        parser.error("missing '--' before the job's command line")
    split = args.index("--")
    opts = parser.parse_args(args[:split])
    if opts.mount and not opts.sandbox:
        parser.error("--mount needs --sandbox: only the sandbox can show a volume at its target")
    return opts, args[split + 1 :]


def main(args: Sequence[str] | None = None) -> int:
    opts, argv = parse_args(sys.argv[1:] if args is None else args)
    job_dir = opts.job_dir.resolve()
    box = None
    if opts.sandbox:
        box = Sandbox(
            job_dir, tuple(opts.input), uid=opts.sandbox_uid, gid=opts.sandbox_uid, mounts=tuple(opts.mount)
        )
    supervisor = Supervisor(
        job_dir=job_dir,
        argv=argv,
        cores=opts.cores,
        memory_gib=opts.memory_gib,
        timeout_s=opts.timeout_s,
        kill_grace_s=max(0.0, opts.kill_grace_s),
        sandbox=box,
    )
    supervisor.install_signal_handlers()
    try:
        return supervisor.run()
    except Exception as exc:
        supervisor.crash(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
