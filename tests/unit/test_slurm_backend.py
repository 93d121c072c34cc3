"""The Slurm backend against a fake slurmrestd (httpx.MockTransport) speaking v0.0.38 JSON."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from cirasa.backends.base import (
    BackendUnavailable,
    JobSpec,
    TrackedJob,
)
from cirasa.backends.factory import CONTAINER_BACKENDS, FACTORIES, make_backend
from cirasa.backends.local_runner import THREAD_ENV_VARS
from cirasa.backends.slurm import (
    SlurmAuthError,
    SlurmBackend,
    SlurmError,
    SlurmOptions,
    decode_exit_status,
    job_status,
    jwt_expiry,
)
from cirasa.common.events import JobState, Resources
from cirasa.common.settings import PlatformConfig, Settings

URL = "http://slurm.test:6820"
NOW = 1_800_000_000.0


def make_jwt(exp: float | None, user: str = "root") -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    claims: dict[str, Any] = {"sun": user, "iat": int(NOW)}
    if exp is not None:
        claims["exp"] = int(exp)
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass
class FakeSlurm:
    """A tiny slurmrestd: a job table, request log and knobs for errors."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    valid_tokens: set[str] | None = None  # None: any token is fine
    next_id: int = 100
    submit_reply: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None
    jobs_errors: list[dict[str, Any]] = field(default_factory=list)
    on_submit: Callable[[], None] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        token = request.headers.get("X-SLURM-USER-TOKEN")
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return self._reply(
                500,
                errors=[
                    {
                        "description": "slurmctld config is unable to load",
                        "error_number": -1,
                        "error": "Unspecified error",
                        "source": "slurm_load_ctl_conf",
                    }
                ],
            )
        path = request.url.path
        prefix = "/slurm/v0.0.38"
        if not path.startswith(prefix):
            return httpx.Response(404, text="Unable find requested URL.")
        path = path.removeprefix(prefix)
        if request.method == "GET" and path == "/jobs":
            return self._reply(200, errors=self.jobs_errors, jobs=self.jobs)
        if request.method == "GET" and path == "/nodes":
            return self._reply(200, nodes=self.nodes)
        if request.method == "POST" and path == "/job/submit":
            body = json.loads(request.content)
            if self.submit_reply is not None:
                status, payload = self.submit_reply(body)
                return self._reply(status, **payload)
            job_id = self.next_id
            self.next_id += 1
            self.jobs.append({"job_id": job_id, "name": body["job"]["name"], "job_state": "PENDING"})
            if self.on_submit is not None:
                self.on_submit()
            return self._reply(200, job_id=job_id, step_id="BATCH", job_submit_user_msg="")
        if request.method == "DELETE" and path.startswith("/job/"):
            job_id = int(path.rsplit("/", 1)[1])
            for job in self.jobs:
                if job["job_id"] == job_id:
                    if job["job_state"] in ("PENDING", "RUNNING"):
                        job["job_state"] = "CANCELLED"
                    return self._reply(200)
            return self._reply(
                500,
                errors=[
                    {
                        "description": f"unable to kill JobId={job_id}: Invalid job id specified",
                        "error_number": 2017,
                        "error": "Invalid job id specified",
                        "source": "slurm_kill_job",
                    }
                ],
            )
        return httpx.Response(404, text="Unable find requested URL.")

    @staticmethod
    def _reply(status: int, errors: list[dict[str, Any]] | None = None, **body: Any) -> httpx.Response:
        meta = {"plugin": {"type": "openapi/v0.0.38"}, "Slurm": {"release": "22.05.8"}}
        return httpx.Response(status, json={"meta": meta, "errors": errors or [], **body})

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(path)]


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


def backend(
    fake: FakeSlurm, tmp_path: Path, clock: Callable[[], float] = lambda: NOW, **options: Any
) -> SlurmBackend:
    opts: dict[str, Any] = {"url": URL, "user": "astro", "token": "t0k3n", **options}
    return SlurmBackend(
        SlurmOptions.model_validate(opts),
        data_dir=tmp_path / "data",
        jobs_dir=tmp_path / "jobs",
        transport=httpx.MockTransport(fake.handler),
        clock=clock,
    )


def spec(tmp_path: Path, job_id: str = "abc123", **kw: Any) -> JobSpec:
    defaults: dict[str, Any] = {
        "user": "alice",
        "app": "sep",
        "argv": [
            sys.executable,
            "-m",
            "cirasa.finders.runners.sep",
            "--seedthr=5",
            "--image",
            str((tmp_path / "data" / "alice" / "sky.fits").resolve()),
            "--out-dir",
            ".",
        ],
        "job_dir": (tmp_path / "jobs" / "alice" / f"job_{job_id}").resolve(),
        "resources": Resources(cores=2, memory_gib=1.5, duration_s=61),
    }
    defaults.update(kw)
    return JobSpec(job_id=job_id, **defaults)


def exec_words(script: str) -> list[str]:
    """The words of the script's ``exec`` command, as a POSIX shell would split them."""
    assert script.startswith("#!/bin/bash\n")
    return shlex.split(script[script.index("\nexec ") + len("\nexec ") :])


# -- options --------------------------------------------------------------------------------------


def test_options_need_exactly_one_token_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of token"):
        SlurmOptions.model_validate({"url": URL, "user": "u"})
    with pytest.raises(ValidationError, match="got token, token_file"):
        SlurmOptions.model_validate({"url": URL, "user": "u", "token": "x", "token_file": "/t"})
    with pytest.raises(ValidationError):
        SlurmOptions.model_validate({"url": URL, "user": "u", "token": "x", "api_version": "v0.0.40"})
    with pytest.raises(ValidationError, match="absolute"):
        SlurmOptions.model_validate({"url": URL, "user": "u", "token": "x", "cluster_jobs_dir": "jobs"})
    with pytest.raises(ValidationError, match="--bind"):
        SlurmOptions.model_validate({"url": URL, "user": "u", "token": "x", "cluster_data_dir": "/a,b"})
    with pytest.raises(ValidationError):
        SlurmOptions.model_validate({"url": URL, "user": "u", "token": "x", "bogus": 1})
    opts = SlurmOptions.model_validate({"url": URL, "user": "u", "token_env": "SLURM_TOKEN"})
    assert opts.api_version == "v0.0.38"


def test_registered_as_a_container_backend(tmp_path: Path) -> None:
    assert "slurm" in FACTORIES
    assert "slurm" in CONTAINER_BACKENDS
    settings = Settings(data_dir=tmp_path / "d", jobs_dir=tmp_path / "j")
    platform = PlatformConfig(
        name="hpc", backend="slurm", cores=8, memory_gib=16, max_duration_s=3600,
        options={"url": URL, "user": "astro", "token": "x"},
    )  # fmt: skip
    assert isinstance(make_backend(platform, settings), SlurmBackend)
    broken = platform.model_copy(update={"options": {"url": URL}})
    with pytest.raises(BackendUnavailable, match="platform hpc: invalid Slurm options"):
        make_backend(broken, settings)


# -- submit: the request --------------------------------------------------------------------------


def test_submit_body_headers_and_working_directory(fake: FakeSlurm, tmp_path: Path) -> None:
    b = backend(fake, tmp_path, partition="astro", account="ska")
    s = spec(tmp_path)
    assert b.submit(s) == "100"
    assert s.job_dir.is_dir()  # created for slurmd, which fails a job without its working directory
    (post,) = fake.calls("POST", "/job/submit")
    assert post.url.path == "/slurm/v0.0.38/job/submit"
    assert post.headers["X-SLURM-USER-NAME"] == "astro"
    assert post.headers["X-SLURM-USER-TOKEN"] == "t0k3n"
    body = json.loads(post.content)
    job = body["job"]
    assert job["name"] == "cirasa-abc123"
    assert job["cpus_per_task"] == 2
    assert job["memory_per_node"] == 1536  # MB
    assert job["time_limit"] == 2  # 61 s rounded up to whole minutes
    assert job["current_working_directory"] == str(s.job_dir)
    assert job["standard_output"] == f"{s.job_dir}/stdout.log"
    assert job["standard_error"] == f"{s.job_dir}/stderr.log"
    assert job["partition"] == "astro" and job["account"] == "ska"
    assert job["environment"]["PATH"]
    assert {k: job["environment"][k] for k in THREAD_ENV_VARS} == dict.fromkeys(THREAD_ENV_VARS, "2")
    assert exec_words(body["script"]) == s.argv


@pytest.mark.parametrize(
    ("duration_s", "minutes", "memory_gib", "mb"),
    [(1, 1, 0.3, 308), (60, 1, 1.0, 1024), (3601, 61, 64, 65536)],
)
def test_limits_round_up(
    fake: FakeSlurm, tmp_path: Path, duration_s: int, minutes: int, memory_gib: float, mb: int
) -> None:
    res = Resources(cores=1, memory_gib=memory_gib, duration_s=duration_s)
    job = backend(fake, tmp_path).submission(spec(tmp_path, resources=res))["job"]
    assert (job["time_limit"], job["memory_per_node"]) == (minutes, mb)
    assert "partition" not in job and "account" not in job


def test_api_version_is_used_in_paths(fake: FakeSlurm, tmp_path: Path) -> None:
    b = backend(fake, tmp_path, api_version="v0.0.37")
    with pytest.raises(SlurmError, match="HTTP 404"):
        b.poll([TrackedJob("a", "1", tmp_path)])
    assert fake.requests[0].url.path == "/slurm/v0.0.37/jobs"


def test_batch_script_quotes_every_word(fake: FakeSlurm, tmp_path: Path) -> None:
    hostile = ["$(touch pwned)", "a b", "'; touch pwned #", "`touch pwned`", "x\ny", "--o=$HOME", "*", ""]
    show_args = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    script = backend(fake, tmp_path).batch_script(spec(tmp_path, argv=[*show_args, *hostile]))
    assert exec_words(script) == [*show_args, *hostile]
    # and a real bash runs exactly these words, expanding nothing
    (tmp_path / "job.sh").write_text(script)
    done = subprocess.run(["bash", "job.sh"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == hostile
    assert not (tmp_path / "pwned").exists()


def test_paths_and_python_are_mapped_to_the_cluster(fake: FakeSlurm, tmp_path: Path) -> None:
    b = backend(
        fake, tmp_path,
        cluster_data_dir="/lustre/data", cluster_jobs_dir="/lustre/jobs", python="/opt/venv/bin/python",
    )  # fmt: skip
    s = spec(tmp_path)
    body = b.submission(s)
    words = exec_words(body["script"])
    assert words[0] == "/opt/venv/bin/python"
    assert words[words.index("--image") + 1] == "/lustre/data/alice/sky.fits"
    assert body["job"]["current_working_directory"] == "/lustre/jobs/alice/job_abc123"
    assert body["job"]["standard_output"] == "/lustre/jobs/alice/job_abc123/stdout.log"
    data = str((tmp_path / "data").resolve())
    assert b.cluster_word(f"--inputfile={data}/u/x.fits") == "--inputfile=/lustre/data/u/x.fits"
    assert b.cluster_word(f"{data}other/x") == f"{data}other/x"  # a sibling, not under the root
    assert b.cluster_word("/elsewhere/x") == "/elsewhere/x"


def test_container_app_runs_through_singularity(fake: FakeSlurm, tmp_path: Path) -> None:
    data = (tmp_path / "data").resolve()
    s = spec(tmp_path, app="aegean", image=f"{data}/images/aegean.sif",
             argv=["--seedthr=5", f"--inputfile={data}/alice/sky.fits"])  # fmt: skip
    b = backend(fake, tmp_path, cluster_data_dir="/lustre/data", cluster_jobs_dir="/lustre/jobs")
    assert exec_words(b.batch_script(s)) == [
        "singularity", "run", "--bind", "/lustre/data,/lustre/jobs",
        "/lustre/data/images/aegean.sif", "--seedthr=5", "--inputfile=/lustre/data/alice/sky.fits",
    ]  # fmt: skip

    b2 = backend(fake, tmp_path, container_command="apptainer", container_bind=False,
                 container_options=["--cleanenv"])  # fmt: skip
    words = exec_words(b2.batch_script(JobSpec(**{**s.__dict__, "image": "sselvaggi/aegean:1.0"})))
    assert words[:4] == ["apptainer", "run", "--cleanenv", "docker://sselvaggi/aegean:1.0"]
    oras = exec_words(b2.batch_script(JobSpec(**{**s.__dict__, "image": "oras://reg/x:1"})))
    assert oras[3] == "oras://reg/x:1"
    with pytest.raises(ValueError, match="refusing container image"):
        b2.batch_script(JobSpec(**{**s.__dict__, "image": "--bind=/:/host"}))


def test_unsafe_job_id_is_refused(fake: FakeSlurm, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be used in a Slurm job name"):
        backend(fake, tmp_path).submit(spec(tmp_path, job_id="x\n#SBATCH --uid=0"))
    assert fake.calls("POST", "/job/submit") == []


# -- submit: errors and idempotency ---------------------------------------------------------------


def test_errors_on_http_200_are_raised_and_the_stuck_job_canceled(fake: FakeSlurm, tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fake.jobs.append({"job_id": 7, "name": body["job"]["name"], "job_state": "PENDING"})
        err = {"error_code": 2015, "error": "Requested partition configuration not available now"}
        return 200, {"job_id": 7, "errors": [err]}

    fake.submit_reply = reply
    with pytest.raises(
        SlurmError, match=r"Requested partition configuration not available now \(error 2015\)"
    ):
        backend(fake, tmp_path).submit(spec(tmp_path))
    assert [r.url.path for r in fake.calls("DELETE", "/job/7")] == ["/slurm/v0.0.38/job/7"]


def test_http_error_is_a_clear_backend_error(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.submit_reply = lambda body: (
        500,
        {"errors": [{"error_code": 2000, "error": "Invalid partition name"}]},
    )
    with pytest.raises(
        BackendUnavailable, match=r"Slurm refused job cirasa-abc123: HTTP 500: Invalid partition"
    ):
        backend(fake, tmp_path).submit(spec(tmp_path))


def test_unreachable_and_non_json_answers(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    opts = SlurmOptions(url=URL, user="u", token="x")
    b = SlurmBackend(opts, data_dir=tmp_path, jobs_dir=tmp_path, transport=httpx.MockTransport(down))
    with pytest.raises(SlurmError, match="did not answer GET /jobs"):
        b.poll([TrackedJob("a", "1", tmp_path)])
    plain = httpx.MockTransport(lambda r: httpx.Response(400, text="Unable to parse query."))
    b = SlurmBackend(opts, data_dir=tmp_path, jobs_dir=tmp_path, transport=plain)
    with pytest.raises(SlurmError, match="not a JSON object"):
        b.capacity()


def test_submit_is_idempotent_per_job_id(fake: FakeSlurm, tmp_path: Path) -> None:
    b = backend(fake, tmp_path)
    first = b.submit(spec(tmp_path))
    fake.jobs[0]["job_state"] = "COMPLETED"  # also after the job ended
    assert b.submit(spec(tmp_path)) == first
    assert len(fake.calls("POST", "/job/submit")) == 1
    assert b.submit(spec(tmp_path, job_id="other")) != first


def test_concurrent_duplicate_is_canceled_and_lowest_id_kept(fake: FakeSlurm, tmp_path: Path) -> None:
    # another replica submitted the same job between our look-up and our POST
    fake.on_submit = lambda: fake.jobs.insert(
        0, {"job_id": 42, "name": "cirasa-abc123", "job_state": "PENDING"}
    )
    assert backend(fake, tmp_path).submit(spec(tmp_path)) == "42"
    assert [r.url.path for r in fake.calls("DELETE", "/job/100")] == ["/slurm/v0.0.38/job/100"]
    assert fake.calls("DELETE", "/job/42") == []


# -- poll -----------------------------------------------------------------------------------------


def test_poll_is_one_request_for_many_jobs(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.jobs = [
        {"job_id": 1, "name": "cirasa-a", "job_state": "RUNNING", "start_time": int(NOW) - 30,
         "end_time": int(NOW) + 3570, "flags": ["JOB_WAS_RUNNING"], "batch_host": "n1"},
        {"job_id": 2, "name": "cirasa-b", "job_state": "COMPLETED", "exit_code": 0,
         "start_time": int(NOW) - 100, "end_time": int(NOW) - 40, "flags": ["JOB_WAS_RUNNING"]},
        {"job_id": 3, "name": "somebody-else", "job_state": "RUNNING"},
        {"job_id": 4, "name": "cirasa-e", "job_state": "PENDING", "state_reason": "Resources"},
    ]  # fmt: skip
    tracked = [
        TrackedJob("a", "1", tmp_path),
        TrackedJob("b", "2", tmp_path),
        TrackedJob("c", "3", tmp_path),  # id reused by another job: ours is gone
        TrackedJob("d", "99", tmp_path),  # purged after MinJobAge
        TrackedJob("e", None, tmp_path),  # no backend id recorded: found by name
    ]
    out = backend(fake, tmp_path).poll(tracked)
    assert len(fake.requests) == 1 and fake.requests[0].url.path == "/slurm/v0.0.38/jobs"
    a, b, e = out["a"], out["b"], out["e"]
    assert a is not None and (a.state, a.elapsed_s) == (JobState.RUNNING, 30.0)
    assert b is not None and (b.state, b.exit_code, b.elapsed_s) == (JobState.SUCCESS, 0, 60.0)
    assert out["c"] is None and out["d"] is None
    assert e is not None and e.state is JobState.PENDING and "Resources" in e.status
    assert backend(fake, tmp_path).poll([]) == {} and len(fake.requests) == 1


def test_a_failure_says_what_the_job_wrote_to_its_stderr(fake: FakeSlurm, tmp_path: Path) -> None:
    failed = {"job_state": "FAILED", "exit_code": 512, "flags": ["JOB_WAS_RUNNING"]}
    fake.jobs = [{"job_id": 1, "name": "cirasa-a", **failed}, {"job_id": 2, "name": "cirasa-b", **failed}]
    said, silent = tmp_path / "job_a", tmp_path / "job_b"  # b's stderr is not readable from here
    said.mkdir()
    (said / "stderr.log").write_text("sep_finder: error: not a readable FITS file: sky.png\n\n")
    out = backend(fake, tmp_path).poll([TrackedJob("a", "1", said), TrackedJob("b", "2", silent)])
    a, b = out["a"], out["b"]
    assert a is not None and a.status == (
        "sep_finder: error: not a readable FITS file: sky.png "
        "(job completed execution unsuccessfully (exit code 2))"
    )
    assert b is not None and b.status == "Job completed execution unsuccessfully (exit code 2)"


def test_errors_in_a_jobs_listing_never_look_like_vanished_jobs(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.jobs_errors = [{"error_number": 1, "error": "Unspecified error", "source": "slurm_load_jobs"}]
    with pytest.raises(SlurmError, match="Unspecified error"):
        backend(fake, tmp_path).poll([TrackedJob("a", "1", tmp_path)])


def rec(
    state: str | list[str], exit_code: int = 0, reason: str = "None", ran: bool = True, **kw: Any
) -> dict[str, Any]:
    start = int(NOW) - 50
    return {
        "job_id": 1, "name": "cirasa-x", "job_state": state, "exit_code": exit_code,
        "state_reason": reason, "start_time": start, "end_time": start + 20,
        "flags": ["JOB_WAS_RUNNING"] if ran else [], "batch_host": "n1" if ran else "", **kw,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("record", "state", "exit_code", "text"),
    [
        (rec("COMPLETED"), JobState.SUCCESS, 0, "completed execution successfully"),
        (rec("FAILED", 256, "NonZeroExitCode"), JobState.FAILURE, 1, "(exit code 1)"),
        (rec("FAILED", 768, "NonZeroExitCode"), JobState.FAILURE, 3, "(exit code 3)"),
        (rec("FAILED", 9), JobState.FAILURE, -9, "killed by signal 9"),
        (
            rec("FAILED", 4021, "JobLaunchFailure"),
            JobState.FAILURE,
            -1,
            "Slurm error 4021: check that the job",
        ),
        (
            rec("FAILED", 9, "JobLaunchFailure"),
            JobState.FAILURE,
            -9,
            "unsuccessfully (killed by signal 9)",
        ),
        (rec("CANCELLED", 15), JobState.CANCELED, -1, "canceled"),
        (
            rec("TIMEOUT", 15, "TimeLimit"),
            JobState.TIMED_OUT,
            124,
            "time limit reached, stopped with signal 15",
        ),
        (rec("NODE_FAIL"), JobState.FAILURE, -1, "failure of one of its nodes"),
        (rec("PREEMPTED", 15), JobState.FAILURE, -15, "preemption"),
        (rec("BOOT_FAIL"), JobState.FAILURE, -1, "failed to boot"),
        (rec("DEADLINE"), JobState.FAILURE, -1, "deadline"),
        (rec("OUT_OF_MEMORY", 9), JobState.FAILURE, -9, "out of memory"),
        (
            rec("PENDING", reason="Priority", ran=False, start_time=int(NOW) + 999),
            JobState.PENDING,
            -1,
            "Priority",
        ),
        (rec("RUNNING"), JobState.RUNNING, -1, "executing"),
        (rec("COMPLETING"), JobState.RUNNING, -1, "completing"),
        (rec("SUSPENDED"), JobState.RUNNING, -1, "suspended"),
        (rec("CONFIGURING", ran=False), JobState.PENDING, -1, "waiting for its nodes"),
        (rec("WEIRD_NEW_STATE"), JobState.RUNNING, -1, "unknown state (raw state=WEIRD_NEW_STATE)"),
        (rec("WEIRD_NEW_STATE", ran=False), JobState.PENDING, -1, "unknown state"),
        (rec(["FAILED", "REQUEUED"], 512), JobState.FAILURE, 2, "(exit code 2)"),  # v0.0.39+ list form
    ],
)
def test_state_and_exit_code_mapping(
    record: dict[str, Any], state: JobState, exit_code: int, text: str
) -> None:
    status = job_status(record, NOW)
    assert (status.state, status.exit_code) == (state, exit_code)
    assert text in status.status


def test_elapsed_and_timestamps() -> None:
    pending = job_status(rec("PENDING", ran=False, start_time=int(NOW) + 600), NOW)
    assert (pending.elapsed_s, pending.started_at, pending.finished_at) == (0.0, None, None)
    running = job_status(rec("RUNNING", end_time=int(NOW) + 9999), NOW)  # end_time = expected end
    assert running.elapsed_s == 50.0 and running.started_at is not None and running.finished_at is None
    done = job_status(rec("COMPLETED"), NOW)
    assert done.elapsed_s == 20.0 and done.finished_at is not None
    # cancelled while pending: Slurm sets start = end = cancel time, but the job never ran
    never = job_status(rec("CANCELLED", ran=False, start_time=int(NOW), end_time=int(NOW)), NOW)
    assert (never.started_at, never.elapsed_s) == (None, 0.0)


def test_decode_exit_status() -> None:
    assert decode_exit_status(0) == (0, None)
    assert decode_exit_status(256) == (1, None)
    assert decode_exit_status(255 << 8) == (255, None)
    assert decode_exit_status(9) == (None, 9)
    assert decode_exit_status(15 | 0x80) == (None, 15)  # with the core-dump bit
    assert decode_exit_status(4021) == (None, None)  # a Slurm error number, not a wait status
    assert decode_exit_status(1 << 16) == (None, None)


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.jobs = [{"job_id": 5, "name": "cirasa-x", "job_state": "RUNNING"}]
    b = backend(fake, tmp_path)
    b.cancel(TrackedJob("x", "5", tmp_path))
    assert fake.jobs[0]["job_state"] == "CANCELLED"
    assert fake.requests[-1].method == "DELETE" and fake.requests[-1].url.path == "/slurm/v0.0.38/job/5"
    b.cancel(TrackedJob("gone", "77", tmp_path))  # 500 / 2017: already gone, not an error
    fake.jobs.append({"job_id": 6, "name": "cirasa-y", "job_state": "PENDING"})
    b.cancel(TrackedJob("y", None, tmp_path))  # never got a backend id: found by name
    assert fake.jobs[1]["job_state"] == "CANCELLED"


def test_cancel_refused_is_raised(tmp_path: Path) -> None:
    denied = {"errors": [{"error_number": 2002, "error": "Access/permission denied"}]}
    transport = httpx.MockTransport(lambda r: httpx.Response(500, json=denied))
    opts = SlurmOptions(url=URL, user="u", token="x")
    b = SlurmBackend(opts, data_dir=tmp_path, jobs_dir=tmp_path, transport=transport)
    with pytest.raises(SlurmError, match=r"Access/permission denied \(error 2002\)"):
        b.cancel(TrackedJob("x", "5", tmp_path))


# -- tokens ---------------------------------------------------------------------------------------


def test_jwt_expiry() -> None:
    assert jwt_expiry(make_jwt(NOW + 60)) == NOW + 60
    assert jwt_expiry(make_jwt(None)) is None
    assert jwt_expiry("not-a-jwt") is None


def test_token_file_is_reread_when_it_changes(fake: FakeSlurm, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("SLURM_JWT=first\n")
    b = backend(fake, tmp_path, token=None, token_file=str(token_file))
    b.poll([TrackedJob("a", "1", tmp_path)])
    token_file.write_text("second-token\n")  # size changes too, so even a coarse mtime sees it
    b.poll([TrackedJob("a", "1", tmp_path)])
    assert [r.headers["X-SLURM-USER-TOKEN"] for r in fake.requests] == ["first", "second-token"]


def test_rejected_token_is_renewed_once_and_the_request_repeated(fake: FakeSlurm, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    fake.valid_tokens = {"new"}
    b = backend(fake, tmp_path, token=None, token_file=str(token_file))
    with pytest.raises(SlurmAuthError, match="rejected the token of user astro"):
        b.poll([TrackedJob("a", "1", tmp_path)])
    assert len(fake.requests) == 2  # the original and one retry after re-reading the file
    token_file.write_text("new")
    b.poll([TrackedJob("a", "1", tmp_path)])
    assert fake.requests[-1].headers["X-SLURM-USER-TOKEN"] == "new"


def test_fixed_token_rejected_is_not_retried(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.valid_tokens = set()
    with pytest.raises(SlurmAuthError):
        backend(fake, tmp_path).submit(spec(tmp_path))
    assert len(fake.requests) == 1


def test_token_command_renews_before_expiry(fake: FakeSlurm, tmp_path: Path) -> None:
    counter = tmp_path / "minted"
    minter = tmp_path / "mint.py"
    minter.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print('SLURM_JWT=' + sys.argv[n])\n"
    )
    tokens = [make_jwt(NOW + 600), make_jwt(NOW + 1200)]
    clock = [NOW]
    b = backend(
        fake, tmp_path, clock=lambda: clock[0],
        token=None, token_command=[sys.executable, str(minter), *tokens], token_renew_before_s=300,
    )  # fmt: skip
    b.poll([TrackedJob("a", "1", tmp_path)])
    clock[0] = NOW + 200  # 400 s left: still fine
    b.poll([TrackedJob("a", "1", tmp_path)])
    clock[0] = NOW + 350  # 250 s left: renew
    b.poll([TrackedJob("a", "1", tmp_path)])
    assert [r.headers["X-SLURM-USER-TOKEN"] for r in fake.requests] == [tokens[0], tokens[0], tokens[1]]
    assert counter.read_text() == "2"


def test_token_from_environment(fake: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend(fake, tmp_path, token=None, token_env="CIRASA_T_SLURM_JWT")
    monkeypatch.delenv("CIRASA_T_SLURM_JWT", raising=False)
    with pytest.raises(SlurmAuthError, match="CIRASA_T_SLURM_JWT holds no Slurm token"):
        b.poll([TrackedJob("a", "1", tmp_path)])
    monkeypatch.setenv("CIRASA_T_SLURM_JWT", "from-env")
    b.poll([TrackedJob("a", "1", tmp_path)])
    assert fake.requests[-1].headers["X-SLURM-USER-TOKEN"] == "from-env"


# -- capacity -------------------------------------------------------------------------------------


def test_capacity_of_a_partition(fake: FakeSlurm, tmp_path: Path) -> None:
    def node(
        name: str, state: str, cpus: int, alloc: int, mem: int, alloc_mem: int, **kw: Any
    ) -> dict[str, Any]:
        return {
            "name": name, "state": state, "state_flags": [], "cpus": cpus, "alloc_cpus": alloc,
            "idle_cpus": cpus - alloc, "real_memory": mem, "alloc_memory": alloc_mem,
            "partitions": ["astro"], **kw,
        }  # fmt: skip

    fake.nodes = [
        node("n1", "idle", 16, 0, 64000, 0),
        node("n2", "mixed", 16, 12, 64000, 60000),
        node("n3", "idle", 16, 0, 64000, 0, state_flags=["DRAIN"]),
        node("n4", "down", 16, 0, 64000, 0),
        node("n5", "idle", 64, 0, 256000, 0, partitions=["gpu"]),
    ]
    fake.jobs = [
        {"job_id": 1, "name": "a", "job_state": "RUNNING", "cpus": 12, "partition": "astro"},
        {"job_id": 2, "name": "b", "job_state": "PENDING", "cpus": 8, "partition": "astro"},
        {"job_id": 3, "name": "c", "job_state": "PENDING", "cpus": 4, "partition": "astro"},
        {"job_id": 4, "name": "d", "job_state": "COMPLETED", "cpus": 4, "partition": "astro"},
        {"job_id": 5, "name": "e", "job_state": "PENDING", "cpus": 64, "partition": "gpu"},
    ]
    cap = backend(fake, tmp_path, partition="astro").capacity()
    assert (cap.nodes, cap.nodes_unavailable) == (2, 2)
    assert (cap.total_cores, cap.free_cores, cap.max_free_cores_per_node) == (32, 20, 16)
    assert (cap.total_memory_mb, cap.free_memory_mb, cap.max_free_memory_mb_per_node) == (
        128000,
        68000,
        64000,
    )
    assert (cap.running_jobs, cap.running_cores, cap.pending_jobs, cap.pending_cores) == (1, 12, 2, 12)
    assert [r.url.path for r in fake.requests] == ["/slurm/v0.0.38/nodes", "/slurm/v0.0.38/jobs"]
    everything = backend(fake, tmp_path).capacity()
    assert (everything.nodes, everything.total_cores, everything.pending_jobs) == (3, 96, 3)


def test_jobs_do_not_run_as_root_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="unprivileged account"):
        SlurmOptions(url=URL, user="root", token="x")
    assert SlurmOptions(url=URL, user="root", token="x", allow_root=True).user == "root"
