"""The local backend with real subprocesses; every wait is bounded by a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from cirasa.backends import local
from cirasa.backends.local import (
    LocalJobStatus,
    read_local_status,
    request_local_cancel,
    start_local_job,
)
from cirasa.backends.local_runner import (
    CONTROL_DIR,
    HEARTBEAT_FILE,
    SUBMITTED_FILE,
    THREAD_ENV_VARS,
    process_origin,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

FINAL = {"SUCCESS", "FAILURE", "TIMED-OUT", "CANCELED"}
SLEEPER = "import time; time.sleep(30)"
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout_s: float = 8.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_state(job_dir: Path, states: set[str], timeout_s: float = 8.0) -> LocalJobStatus:
    def probe() -> LocalJobStatus | None:
        status = read_local_status(job_dir)
        return status if status is not None and status.state in states else None

    return wait_for(probe, timeout_s, f"state in {sorted(states)} (last: {read_local_status(job_dir)})")


def group_gone(pgid: int | None) -> bool:
    assert pgid is not None
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def job_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "job"
    yield path
    # Never leave processes behind, whatever the test did.
    doc = local._read_json(path / CONTROL_DIR / "state.json") or {}
    for key in ("pid", "runner_pid"):
        pid = doc.get(key)
        if isinstance(pid, int) and pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    local._reap_children()


def test_nothing_submitted(job_dir: Path) -> None:
    assert read_local_status(job_dir) is None


def test_success(job_dir: Path) -> None:
    runner_pid = start_local_job(job_dir, py("import time; time.sleep(0.2); print('hello')"), 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert status.state == "SUCCESS"
    assert status.exit_code == 0
    assert status.runner_pid == runner_pid
    assert status.pid is not None and status.pid != runner_pid
    assert status.elapsed_s > 0
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at
    assert status.status == "Process terminated with success"
    assert (job_dir / "stdout.log").read_text().strip() == "hello"


def test_failure_exit_code(job_dir: Path) -> None:
    start_local_job(job_dir, py("import sys; print('bad', file=sys.stderr); sys.exit(3)"), 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert (status.state, status.exit_code) == ("FAILURE", 3)
    assert status.status == "bad (process terminated with return code 3)"
    assert "bad" in (job_dir / "stderr.log").read_text()


def test_a_failure_says_the_last_line_of_the_traceback(job_dir: Path) -> None:
    code = (
        "import sys; print('reading sky.png', file=sys.stderr); raise ValueError('not a readable FITS file')"
    )
    start_local_job(job_dir, py(code), 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert (status.state, status.exit_code) == ("FAILURE", 1)
    assert status.status == "ValueError: not a readable FITS file (process terminated with return code 1)"


def test_a_silent_failure_says_only_how_it_ended(job_dir: Path) -> None:
    start_local_job(job_dir, py("import sys; print('   '); sys.exit(4)"), 1, 1, 30)
    assert wait_state(job_dir, FINAL).status == "Process terminated with return code 4"


def test_killed_by_signal(job_dir: Path) -> None:
    start_local_job(job_dir, py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert (status.state, status.exit_code) == ("FAILURE", -9)
    assert status.status == "Process terminated with SIG 9"


def test_timeout(job_dir: Path) -> None:
    t0 = time.monotonic()
    start_local_job(job_dir, py(SLEEPER), 1, 1, timeout_s=1)
    status = wait_state(job_dir, FINAL, timeout_s=8)
    assert time.monotonic() - t0 < 8
    assert (status.state, status.exit_code) == ("TIMED-OUT", 124)
    assert status.status == "Job exceeded its wall-time limit of 1 s"
    assert status.pid is not None
    wait_for(lambda: group_gone(status.pid), 2, "child process group to disappear")


def test_timeout_escalates_to_sigkill(job_dir: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    code += "time.sleep(30)"
    start_local_job(job_dir, py(code), 1, 1, timeout_s=1, kill_grace_s=0.5)
    status = wait_state(job_dir, FINAL, timeout_s=8)
    assert (status.state, status.exit_code) == ("TIMED-OUT", 124)
    assert status.pid is not None and group_gone(status.pid)


def test_cancel_while_running(job_dir: Path) -> None:
    start_local_job(job_dir, py(SLEEPER), 1, 1, 60)
    running = wait_state(job_dir, {"RUNNING"})
    assert running.pid is not None
    request_local_cancel(job_dir)
    status = wait_state(job_dir, FINAL, timeout_s=5)
    assert (status.state, status.exit_code) == ("CANCELED", -1)
    assert status.status == "Job canceled by user"
    wait_for(lambda: group_gone(running.pid), 2, "child process group to disappear")


def test_cancel_before_start(job_dir: Path) -> None:
    request_local_cancel(job_dir)
    start_local_job(job_dir, py("open('ran', 'w').close()"), 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert (status.state, status.exit_code, status.pid) == ("CANCELED", -1, None)
    assert not (job_dir / "ran").exists()


def test_runner_stopped_with_sigterm(job_dir: Path) -> None:
    runner_pid = start_local_job(job_dir, py(SLEEPER), 1, 1, 60)
    running = wait_state(job_dir, {"RUNNING"})
    os.kill(runner_pid, signal.SIGTERM)
    status = wait_state(job_dir, FINAL, timeout_s=5)
    assert (status.state, status.status) == ("CANCELED", "Runner was stopped")
    assert running.pid is not None
    wait_for(lambda: group_gone(running.pid), 2, "child process group to disappear")


def test_start_is_idempotent(job_dir: Path) -> None:
    argv = py("import os; open('starts', 'a').write(f'{os.getpid()}\\n')")
    with ThreadPoolExecutor(max_workers=4) as pool:
        pids = list(pool.map(lambda _: start_local_job(job_dir, argv, 1, 1, 30), range(4)))
    assert len(set(pids)) == 1
    assert start_local_job(job_dir, argv, 1, 1, 30) == pids[0]
    status = wait_state(job_dir, FINAL)
    assert status.state == "SUCCESS"
    assert len((job_dir / "starts").read_text().split()) == 1
    assert start_local_job(job_dir, argv, 1, 1, 30) == pids[0]  # finished jobs are not restarted


def test_missing_executable(job_dir: Path) -> None:
    start_local_job(job_dir, ["/nonexistent/cirasa-tool", "--help"], 1, 1, 30)
    status = wait_state(job_dir, FINAL)
    assert (status.state, status.exit_code) == ("FAILURE", 127)
    assert "/nonexistent/cirasa-tool" in status.status


def test_thread_env_vars(job_dir: Path) -> None:
    code = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {list(THREAD_ENV_VARS)!r}}}))"
    start_local_job(job_dir, py(code), 3, 1, 30)
    assert wait_state(job_dir, FINAL).state == "SUCCESS"
    assert json.loads((job_dir / "stdout.log").read_text()) == dict.fromkeys(THREAD_ENV_VARS, "3")


def test_memory_limit(job_dir: Path) -> None:
    start_local_job(job_dir, py("data = bytearray(2 * 1024**3); print(len(data))"), 1, 0.5, 30)
    status = wait_state(job_dir, FINAL)
    assert status.state == "FAILURE"
    assert "MemoryError" in (job_dir / "stderr.log").read_text()


def test_runner_killed_is_detected(job_dir: Path) -> None:
    runner_pid = start_local_job(job_dir, py(SLEEPER), 1, 1, 60)
    running = wait_state(job_dir, {"RUNNING"})
    os.kill(runner_pid, signal.SIGKILL)
    status = wait_state(job_dir, {"FAILURE"}, timeout_s=5)
    assert status.status == "Runner process vanished"
    assert status.pid == running.pid and status.runner_pid == runner_pid
    assert running.pid is not None
    if sys.platform.startswith("linux"):  # PR_SET_PDEATHSIG takes the job down with its runner
        wait_for(lambda: group_gone(running.pid), 2, "orphaned child to die")


def test_pending_while_runner_starts(job_dir: Path) -> None:
    # A stand-in "runner" that never writes state.json: its cmdline mentions local_runner.
    fake = subprocess.Popen([sys.executable, "-c", SLEEPER, "local_runner"])
    try:
        control = job_dir / CONTROL_DIR
        control.mkdir(parents=True)
        (control / SUBMITTED_FILE).write_text(json.dumps({"runner_pid": fake.pid, **process_origin()}))
        status = read_local_status(job_dir)
        assert status is not None and (status.state, status.runner_pid) == ("PENDING", fake.pid)
        fake.kill()  # not reaped yet: a zombie must count as dead
        if sys.platform.startswith("linux"):
            wait_for(lambda: local._proc_state(fake.pid) == "Z", 2, "the fake runner to become a zombie")
        status = read_local_status(job_dir)
        assert status is not None and (status.state, status.status) == ("FAILURE", "Runner process vanished")
    finally:
        fake.kill()
        fake.wait()


def test_other_pid_namespace_uses_heartbeat(job_dir: Path) -> None:
    control = job_dir / CONTROL_DIR
    control.mkdir(parents=True)
    origin = {"host": "some-other-node", "pid_ns": "pid:[1]"}
    (control / SUBMITTED_FILE).write_text(json.dumps({"runner_pid": 4_000_000, **origin}))
    (control / HEARTBEAT_FILE).touch()
    status = read_local_status(job_dir)
    assert status is not None and status.state == "PENDING"
    stale = time.time() - local.RUNNER_STALE_S - 5
    os.utime(control / HEARTBEAT_FILE, (stale, stale))
    status = read_local_status(job_dir)
    assert status is not None and (status.state, status.status) == ("FAILURE", "Runner process vanished")


def test_invalid_arguments(job_dir: Path) -> None:
    with pytest.raises(ValueError):
        start_local_job(job_dir, [], 1, 1, 30)
    with pytest.raises(ValueError):
        start_local_job(job_dir, py("pass"), 0, 1, 30)
    assert read_local_status(job_dir) is None


def test_backend_adapter(job_dir: Path) -> None:
    from cirasa.backends.base import JobSpec, TrackedJob
    from cirasa.backends.factory import make_backend
    from cirasa.common.events import JobState, Resources
    from cirasa.common.settings import Settings

    settings = Settings()
    backend = make_backend(settings.platforms[0], settings)
    spec = JobSpec(
        "j1", "alice", "test", py(SLEEPER), job_dir, Resources(cores=1, memory_gib=1, duration_s=60)
    )
    backend_job_id = backend.submit(spec)
    assert backend.submit(spec) == backend_job_id
    tracked = TrackedJob("j1", backend_job_id, job_dir)
    missing = TrackedJob("j2", None, job_dir.parent / "never-submitted")
    wait_state(job_dir, {"RUNNING"})
    statuses = backend.poll([tracked, missing])
    assert statuses["j2"] is None
    assert statuses["j1"] is not None and statuses["j1"].state is JobState.RUNNING
    backend.cancel(tracked)
    wait_state(job_dir, FINAL)
    final = backend.poll([tracked])["j1"]
    assert final is not None and (final.state, final.exit_code) == (JobState.CANCELED, -1)
