"""The Slurm backend against a real slurmctld/slurmd through slurmrestd (``scripts/slurm.sh up``).

Needs ``CIRASA_TEST_SLURM_URL`` plus ``CIRASA_TEST_SLURM_TOKEN_FILE`` or ``CIRASA_TEST_SLURM_TOKEN``
(``eval "$(scripts/slurm.sh env)"``; ``scripts/test.sh`` does both). The job directories live in pytest's
temporary directories, so the token's user must be able to write there (root on the test cluster).

Slurm enforces time limits in whole minutes and checks them every 30 s, so the time-out job takes 60-90 s:
it is submitted when the module starts and checked by the last test, while the others run beside it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cirasa.backends.base import BackendStatus, JobSpec, TrackedJob
from cirasa.backends.slurm import SlurmBackend, SlurmOptions
from cirasa.common.events import JobState, Resources
from cirasa.common.settings import MonitorSettings, PlatformConfig, Settings
from tests.conftest import AMQP_URL, API, start_stack, stop_stack

SLURM_URL = os.environ.get("CIRASA_TEST_SLURM_URL", "")

NO_CLUSTER = (
    "CIRASA_TEST_SLURM_URL is unset: no Slurm cluster to test against "
    '(as root: scripts/slurm.sh up && eval "$(scripts/slurm.sh env)")'
)
# Outside CI a developer without the cluster skips these tests; in CI a Slurm that did not come up
# fails them (scripts/test.sh fails even earlier), never a silent skip.
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not SLURM_URL and not os.environ.get("CI"), reason=NO_CLUSTER),
]


@pytest.fixture(autouse=True, scope="module")
def _cluster_is_there() -> None:
    if not SLURM_URL:
        pytest.fail(f"in CI the Slurm tests must run: {NO_CLUSTER}")


def slurm_options(**extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "url": SLURM_URL,
        "user": os.environ.get("CIRASA_TEST_SLURM_USER", "root"),
        "api_version": os.environ.get("CIRASA_TEST_SLURM_API_VERSION", "v0.0.38"),
        "allow_root": True,  # the test cluster's jobs run as root: they write in pytest's 0700 tmp dirs
    }
    if os.environ.get("CIRASA_TEST_SLURM_TOKEN_FILE"):
        opts["token_file"] = os.environ["CIRASA_TEST_SLURM_TOKEN_FILE"]
    else:
        opts["token"] = os.environ.get("CIRASA_TEST_SLURM_TOKEN", "")
    if os.environ.get("CIRASA_TEST_SLURM_PARTITION"):
        opts["partition"] = os.environ["CIRASA_TEST_SLURM_PARTITION"]
    return {**opts, **extra}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("slurm")
    (base / "data").mkdir()
    (base / "jobs").mkdir()
    return base


@pytest.fixture(scope="module")
def backend(root: Path) -> Iterator[SlurmBackend]:
    b = SlurmBackend(
        SlurmOptions.model_validate(slurm_options()), data_dir=root / "data", jobs_dir=root / "jobs"
    )
    yield b
    b.close()


def python_job(root: Path, code: str, duration_s: int = 120) -> JobSpec:
    job_id = uuid.uuid4().hex
    return JobSpec(
        job_id=job_id,
        user="tester",
        app="python",
        argv=[sys.executable, "-c", code],
        job_dir=root / "jobs" / "tester" / f"job_{job_id}",
        resources=Resources(cores=1, memory_gib=0.25, duration_s=duration_s),
    )


def wait_status(
    backend: SlurmBackend, spec: JobSpec, slurm_id: str, states: set[JobState], timeout_s: float
) -> BackendStatus:
    deadline = time.monotonic() + timeout_s
    last: BackendStatus | None = None
    while time.monotonic() < deadline:
        last = backend.poll([TrackedJob(spec.job_id, slurm_id, spec.job_dir)])[spec.job_id]
        assert last is not None, f"Slurm job {slurm_id} vanished"
        if last.state in states:
            return last
        time.sleep(0.3)
    raise AssertionError(f"Slurm job {slurm_id} not in {states} after {timeout_s} s (last: {last})")


@pytest.fixture(scope="module", autouse=True)
def timeout_job(backend: SlurmBackend, root: Path) -> Iterator[tuple[JobSpec, str]]:
    """A job that sleeps past its one-minute limit, started before every other test of the module."""
    spec = python_job(root, "import time; time.sleep(600)", duration_s=60)
    slurm_id = backend.submit(spec)
    yield spec, slurm_id
    backend.cancel(TrackedJob(spec.job_id, slurm_id, spec.job_dir))


def test_success_with_exit_0(backend: SlurmBackend, root: Path) -> None:
    spec = python_job(
        root,
        "import os; print('threads', os.environ['OMP_NUM_THREADS']); open('out.txt', 'w').write('ok')",
    )
    slurm_id = backend.submit(spec)
    assert backend.submit(spec) == slurm_id  # idempotent per job id
    status = wait_status(backend, spec, slurm_id, {JobState.SUCCESS, JobState.FAILURE}, 60)
    assert (status.state, status.exit_code) == (JobState.SUCCESS, 0), status
    assert status.started_at is not None and status.finished_at is not None
    assert (spec.job_dir / "out.txt").read_text() == "ok"  # ran in its job directory
    assert (spec.job_dir / "stdout.log").read_text().strip() == "threads 1"
    assert backend.poll([TrackedJob("unknown", "999999", spec.job_dir)]) == {"unknown": None}


def test_failure_with_its_exit_code(backend: SlurmBackend, root: Path) -> None:
    failing = python_job(root, "import sys; print('oops', file=sys.stderr); sys.exit(3)")
    killed = python_job(root, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    ids = {backend.submit(failing): failing, backend.submit(killed): killed}
    final = {JobState.SUCCESS, JobState.FAILURE}
    results = {spec.job_id: wait_status(backend, spec, sid, final, 60) for sid, spec in ids.items()}
    assert (results[failing.job_id].state, results[failing.job_id].exit_code) == (JobState.FAILURE, 3)
    assert "exit code 3" in results[failing.job_id].status
    assert results[failing.job_id].status.startswith("oops (")  # what the job said on its stderr, first
    assert "oops" in (failing.job_dir / "stderr.log").read_text()
    assert (results[killed.job_id].state, results[killed.job_id].exit_code) == (JobState.FAILURE, -9)
    assert "signal 9" in results[killed.job_id].status


def test_cancel(backend: SlurmBackend, root: Path) -> None:
    spec = python_job(root, "import time; time.sleep(600)")
    slurm_id = backend.submit(spec)
    wait_status(backend, spec, slurm_id, {JobState.RUNNING}, 30)
    backend.cancel(TrackedJob(spec.job_id, slurm_id, spec.job_dir))
    status = wait_status(backend, spec, slurm_id, {JobState.CANCELED}, 30)
    assert status.exit_code == -1 and status.started_at is not None


def test_capacity_and_queue(backend: SlurmBackend) -> None:
    cap = backend.capacity()
    assert cap.nodes >= 1 and cap.total_cores >= 1 and 0 <= cap.free_cores <= cap.total_cores
    assert cap.running_jobs >= 1  # the time-out job
    assert cap.total_memory_mb > 0


@pytest.mark.skipif(
    shutil.which("scontrol") is None and not os.environ.get("CI"),  # in CI, a missing scontrol fails
    reason="scontrol is not installed here",
)
def test_token_minted_by_command(root: Path) -> None:
    user = os.environ.get("CIRASA_TEST_SLURM_USER", "root")
    opts = slurm_options(token_command=["scontrol", "token", f"username={user}", "lifespan=300"])
    del opts["token" if "token" in opts else "token_file"]
    b = SlurmBackend(SlurmOptions.model_validate(opts), data_dir=root / "data", jobs_dir=root / "jobs")
    try:
        assert b.poll([TrackedJob("x", "999999", root)]) == {"x": None}
    finally:
        b.close()


async def test_sep_job_on_the_slurm_platform_end_to_end(tmp_path: Path, fits_image: Path) -> None:
    settings = Settings(
        amqp_url=AMQP_URL,
        exchange=f"test.{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path / "data",
        jobs_dir=tmp_path / "jobs",
        outbox_sweep_s=0.2,
        platforms=[
            PlatformConfig(
                name="slurm",
                backend="slurm",
                cores=1,
                memory_gib=2,
                max_duration_s=3600,
                apps=["sep"],
                options=slurm_options(),
            )
        ],
        monitor=MonitorSettings(poll_interval_s=0.2, reconcile_interval_s=1.0),
    )
    stack = await start_stack(settings, memory=True)
    try:
        file_id = await stack.upload(fits_image)
        job_id = await stack.submit("sep", file_id, {"seedthr": 5})
        status = await stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED", "TIMED-OUT"}, timeout_s=120)
        assert status["state"] == "SUCCESS", status
        assert status["exit_code"] == 0
        r = await stack.client.get(f"{API}/job/{job_id}/sources")
        assert r.status_code == 200, r.text
        catalogue = r.json()
        assert catalogue["finder"] == "sep" and len(catalogue["sources"]) >= 10, catalogue
    finally:
        await stop_stack(stack)


def test_time_out(backend: SlurmBackend, timeout_job: tuple[JobSpec, str]) -> None:
    """Last on purpose: the job was submitted when the module started."""
    spec, slurm_id = timeout_job
    final = {JobState.SUCCESS, JobState.FAILURE, JobState.CANCELED, JobState.TIMED_OUT}
    status = wait_status(backend, spec, slurm_id, final, 150)
    assert (status.state, status.exit_code) == (JobState.TIMED_OUT, 124), status
    assert "time limit" in status.status
    assert status.elapsed_s >= 60
