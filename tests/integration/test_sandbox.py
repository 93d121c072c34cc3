"""Untrusted code in the bubblewrap sandbox: issue 9's notebook attack, cell by cell, on the real backend.

User A has an uploaded image and a running job; user B runs a notebook through the local backend,
exactly as the scheduler starts it. Each cell tries one thing the attacker did before the sandbox
and records what happened in ``attacks.json`` (in B's job directory, the one place it may write).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from cirasa.backends.base import BackendUnavailable, JobSpec, TrackedJob
from cirasa.backends.local import LocalBackend, LocalOptions, read_local_status
from cirasa.backends.sandbox import sandbox_available
from cirasa.common.events import Resources, TaskProposed
from cirasa.common.settings import PlatformConfig
from cirasa.finders.registry import get_app
from cirasa.planner.fit import static_fit

SECRET_URL = "amqp://guest:s3cret@127.0.0.1:5672/"
LINGER = "3917"  # `sleep 3917`: the process the attacker leaves behind, found by its argument

ATTACK_CELLS = [
    # each cell appends {name: outcome} to attacks.json; an outcome is what the cell got to do
    """
import json, os, socket, subprocess
def record(name, outcome):
    seen = json.load(open("attacks.json")) if os.path.exists("attacks.json") else {}
    seen[name] = outcome
    json.dump(seen, open("attacks.json", "w"))
def attempt(name, action):
    try:
        record(name, "done: " + str(action()))
    except Exception as exc:
        record(name, "refused: " + type(exc).__name__)
record("uid", os.getuid())
""",
    'record("environment", sorted(k for k in os.environ if k.startswith("CIRASA") or "AMQP" in k))',
    "attempt('read_other_users_file', lambda: len(open(os.environ['A_IMAGE'], 'rb').read()))",
    "forged = os.environ['A_JOB'] + '/catalog-0forged.json'",
    "attempt('forge_other_users_catalogue', lambda: open(forged, 'w').write('{}'))",
    "attempt('cancel_other_users_job', lambda: open(os.environ['A_JOB'] + '/.cirasa/cancel', 'w').close())",
    "attempt('reach_the_broker', lambda: socket.create_connection(('127.0.0.1', 5672), timeout=2).close())",
    "attempt('read_own_state', lambda: open('.cirasa/state.json').read())",
    "attempt('forge_own_state', lambda: open('.cirasa/state.json', 'w').write('{\"state\": \"SUCCESS\"}'))",
    f"attempt('outlive_the_job', lambda: subprocess.Popen(['setsid', 'sleep', '{LINGER}']).pid)",
]


def notebook(path: Path, env: dict[str, str]) -> Path:
    prelude = "import os\n" + "".join(f"os.environ[{k!r}] = {v!r}\n" for k, v in env.items())
    cells = [nbformat.v4.new_code_cell(prelude), *(nbformat.v4.new_code_cell(c) for c in ATTACK_CELLS)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    path.chmod(0o644)
    return path


def wait_final(backend: LocalBackend, job: TrackedJob, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.poll([job])[job.job_id]
        if status is not None and status.state.is_terminal:
            return status
        time.sleep(0.2)
    raise AssertionError(
        f"job {job.job_id} did not end within {timeout_s} s: {read_local_status(job.job_dir)}"
    )


def lingering() -> list[int]:
    """Host pids of `sleep 3917`, whoever started them."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", LINGER.encode()]:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """User A's image and running job; the platform's secrets in the environment the runner inherits."""
    monkeypatch.setenv("CIRASA_AMQP_URL", SECRET_URL)
    data, jobs = tmp_path / "data", tmp_path / "jobs"
    a_image = data / "alice" / "f1" / "sky.fits"
    a_image.parent.mkdir(parents=True)
    a_image.write_bytes(b"SIMPLE  = T" + b" " * 2869)
    a_image.chmod(0o600)  # as uploads are stored: only the job that has it as input may read it
    backend = LocalBackend()
    sleep = get_app("sleep")
    assert sleep is not None
    a_job = jobs / "alice" / "job_a"
    a_job.mkdir(parents=True)
    spec = JobSpec("job-a", "alice", "sleep", sleep.build_argv({"seconds": 60}, str(a_image)), a_job,
                   Resources(cores=1, memory_gib=1, duration_s=120), inputs=(a_image,))  # fmt: skip
    backend.submit(spec)
    tracked = TrackedJob("job-a", None, a_job)
    yield {"data": data, "jobs": jobs, "a_image": a_image, "a_job": a_job}
    backend.cancel(tracked)
    wait_final(backend, tracked, timeout_s=30)


def test_the_sandbox_starts_here() -> None:
    """CI installs bubblewrap: a sandbox that cannot start must fail the run, not skip it."""
    assert sandbox_available() is None


def test_notebook_attacks_are_contained(world: dict[str, Path], tmp_path: Path) -> None:
    backend = LocalBackend()
    b_job = world["jobs"] / "bob" / "job_b"
    b_job.mkdir(parents=True)
    nb = notebook(tmp_path / "attack.ipynb", {"A_IMAGE": str(world["a_image"]), "A_JOB": str(world["a_job"])})
    app = get_app("notebook")
    assert app is not None and app.untrusted
    resources = Resources(cores=1, memory_gib=2, duration_s=300)
    argv = app.build_argv({}, str(nb))
    spec = JobSpec("job-b", "bob", "notebook", argv, b_job, resources, inputs=(nb,), untrusted=True)
    backend.submit(spec)
    status = wait_final(backend, TrackedJob("job-b", None, b_job))
    seen = json.loads((b_job / "attacks.json").read_text())
    assert status.state.value == "SUCCESS", (status, (b_job / "stderr.log").read_text()[-2000:])

    if os.geteuid() == 0:
        assert seen["uid"] == 65534  # an unprivileged uid, not the platform's
    assert seen["environment"] == []  # no CIRASA_AMQP_URL, no credentials
    for attack in (
        "read_other_users_file",
        "forge_other_users_catalogue",
        "cancel_other_users_job",
        "reach_the_broker",
        "read_own_state",
        "forge_own_state",
    ):
        assert seen[attack].startswith("refused"), (attack, seen[attack])
    assert not (world["a_job"] / "catalog-0forged.json").exists()
    assert not (world["a_job"] / ".cirasa" / "cancel").exists()
    a_status = backend.poll([TrackedJob("job-a", None, world["a_job"])])["job-a"]
    assert a_status is not None and a_status.state.value == "RUNNING"
    # it could start a process, but not one that outlives its job
    assert seen["outlive_the_job"].startswith("done")
    assert lingering() == []
    assert json.loads((b_job / ".cirasa" / "state.json").read_text())["state"] == "SUCCESS"


def test_without_a_sandbox_untrusted_code_is_refused_and_finders_still_run(tmp_path: Path) -> None:
    backend = LocalBackend(LocalOptions(sandbox=False))
    nb = notebook(tmp_path / "nb.ipynb", {})
    app = get_app("notebook")
    assert app is not None
    job_dir = tmp_path / "nb-job"
    job_dir.mkdir()
    refused = JobSpec("nb", "bob", "notebook", app.build_argv({}, str(nb)), job_dir,
                      Resources(cores=1, memory_gib=1, duration_s=60), untrusted=True)  # fmt: skip
    with pytest.raises(BackendUnavailable, match="user-supplied code runs only in a sandbox"):
        backend.submit(refused)
    assert not (job_dir / ".cirasa" / "submitted").exists()
    trusted_dir = tmp_path / "trusted"
    trusted_dir.mkdir()
    trusted = JobSpec("t", "bob", "sleep", [sys.executable, "-c", "print('ran')"], trusted_dir,
                      Resources(cores=1, memory_gib=1, duration_s=60))  # fmt: skip
    backend.submit(trusted)
    assert wait_final(backend, TrackedJob("t", None, trusted_dir)).state.value == "SUCCESS"


def test_planner_says_no_to_untrusted_code_where_no_sandbox_can_hold_it() -> None:
    task = TaskProposed(producer="t", correlation_id="p", user="bob", app="notebook")
    boxed = PlatformConfig(name="local", cores=2, memory_gib=4, max_duration_s=3600)
    open_ = PlatformConfig(
        name="open", cores=2, memory_gib=4, max_duration_s=3600, options={"sandbox": False}
    )
    assert static_fit(task, boxed).ok
    (reason,) = static_fit(task, open_).reasons
    assert "user-supplied code, which needs a sandbox" in reason and "switched off" in reason
    trusted = TaskProposed(producer="t", correlation_id="p", user="bob", app="sep")
    assert static_fit(trusted, open_).ok  # finders still run there
