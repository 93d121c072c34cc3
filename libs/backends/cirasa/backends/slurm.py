"""Slurm backend: jobs go to a Slurm cluster through slurmrestd (REST + JWT, API v0.0.36-v0.0.38).

Platform options (``PlatformConfig.options``) are validated by :class:`SlurmOptions`, e.g.::

    options:
      url: http://slurm-rest.example.org:6820
      user: cirasa                     # X-SLURM-USER-NAME; jobs run as this user
      token_file: /run/secrets/slurm-jwt
      partition: astro
      cluster_data_dir: /lustre/cirasa/data    # where CIRASA_DATA_DIR is mounted on the cluster
      cluster_jobs_dir: /lustre/cirasa/jobs    # where CIRASA_JOBS_DIR is mounted on the cluster
      python: /opt/cirasa/venv/bin/python
      container_command: apptainer

What the backend relies on:

* **Idempotency** by job name ``cirasa-<job_id>``: :meth:`SlurmBackend.submit` looks the name up first
  and returns the Slurm job that already carries it (see the comment there for the race window).
* **One** ``GET /jobs`` per :meth:`SlurmBackend.poll`, whatever the number of jobs.
* **Finished jobs are forgotten** by slurmctld ``MinJobAge`` seconds after they end (no accounting
  database is assumed). A job missing from the answer is reported as None and the monitor fails it as
  vanished, so the monitor must poll well within MinJobAge (scripts/slurm.sh sets one hour).
* **Tokens**: a fixed ``token``, a ``token_env`` variable, a ``token_file`` (re-read whenever the file
  changes, so an external renewer such as a cron job running ``scontrol token`` keeps it fresh), or a
  ``token_command`` that prints a token (``scontrol token username=... lifespan=...``), run again
  ``token_renew_before_s`` before the expiry written in the JWT. On an authentication failure the token
  is re-read/re-minted once and the request repeated.
* **Shared filesystem**: the job directory and the input files must be visible on the cluster, under the
  mapped paths. The batch script is the only place a shell sees anything: every word in it is
  ``shlex.quote``-d.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cirasa.backends.base import BackendStatus, BackendUnavailable, JobSpec, TrackedJob
from cirasa.backends.local_runner import STDERR_LOG, STDOUT_LOG, THREAD_ENV_VARS
from cirasa.common.events import JobState
from cirasa.common.settings import PlatformConfig, Settings

log = structlog.get_logger(__name__)

JOB_NAME_PREFIX = "cirasa-"
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

ERR_INVALID_JOB_ID = 2017
"""Slurm's ESLURM_INVALID_JOB_ID: the job is unknown (never existed, or purged after MinJobAge)."""

TERMINAL_SLURM_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
    }
)

# Slurm states that end a job with FAILURE, and what to tell the user (caesar-rest §3.4 plus reasons).
_FAILURE_TEXT = {
    "FAILED": "Job completed execution unsuccessfully",
    "NODE_FAIL": "Job terminated due to the failure of one of its nodes",
    "PREEMPTED": "Job terminated due to preemption",
    "BOOT_FAIL": "Job terminated because its node failed to boot",
    "DEADLINE": "Job terminated on its deadline",
    "OUT_OF_MEMORY": "Job ran out of memory",
}
# non-final states: ours, and the text
_ACTIVE_STATES: dict[str, tuple[JobState, str]] = {
    "PENDING": (JobState.PENDING, "Job queued and waiting for initiation"),
    "CONFIGURING": (JobState.PENDING, "Job allocated, waiting for its nodes to become ready"),
    "REQUEUED": (JobState.PENDING, "Job requeued"),
    "REQUEUE_HOLD": (JobState.PENDING, "Job requeued and held"),
    "REQUEUE_FED": (JobState.PENDING, "Job requeued by the federation"),
    "RESV_DEL_HOLD": (JobState.PENDING, "Job held after its reservation was deleted"),
    "RUNNING": (JobState.RUNNING, "Job executing"),
    "COMPLETING": (JobState.RUNNING, "Job completing"),
    "SIGNALING": (JobState.RUNNING, "Job executing (being signaled)"),
    "STAGE_OUT": (JobState.RUNNING, "Job staging out"),
    "RESIZING": (JobState.RUNNING, "Job executing (being resized)"),
    # caesar-rest maps SUSPENDED to PENDING. A suspended job has started, though: going back to PENDING
    # would regress the state machine and make the monitor's start-timeout fail it. It stays RUNNING.
    "SUSPENDED": (JobState.RUNNING, "Job was suspended"),
    "STOPPED": (JobState.RUNNING, "Job was stopped"),
}

# node states whose CPUs can be given to jobs, and flags that take a node out of service
_USABLE_NODE_STATES = frozenset({"IDLE", "MIXED", "ALLOCATED", "COMPLETING"})
_NODE_OUT_FLAGS = frozenset(
    {"DRAIN", "DRAINED", "DRAINING", "FAIL", "NOT_RESPONDING", "MAINTENANCE", "POWERED_DOWN", "POWER_DOWN"}
)


class SlurmError(BackendUnavailable):
    """slurmrestd refused a request or could not be reached.

    It derives from BackendUnavailable on purpose: the scheduler turns that into a FAILURE of the job
    carrying this message (instead of an unhandled exception), and the monitor's poll loop logs it and
    tries again in its next round without changing any job.
    """


class SlurmConfigError(SlurmError):
    """The platform's Slurm options are invalid (BackendUnavailable: the monitor fails its jobs)."""


class SlurmAuthError(SlurmError):
    """No usable token (missing, unreadable, or rejected by slurmrestd)."""


# -- settings -------------------------------------------------------------------------------------


class SlurmOptions(BaseModel):
    """``PlatformConfig.options`` of a Slurm platform."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="slurmrestd base URL")
    api_version: Literal["v0.0.36", "v0.0.37", "v0.0.38"] = Field(
        "v0.0.38", description="the request/answer formats implemented here (Slurm 20.11 to 22.05)"
    )
    user: str = Field(min_length=1, description="X-SLURM-USER-NAME: the Slurm user jobs run as")
    token: SecretStr | None = Field(None, description="a fixed JWT (no renewal)")
    token_file: Path | None = Field(None, description="file holding the JWT; re-read when it changes")
    token_env: str | None = Field(None, description="environment variable holding the JWT")
    token_command: list[str] | None = Field(
        None, description="argv printing a JWT (or SLURM_JWT=...), run again before the token expires"
    )
    token_renew_before_s: float = Field(300.0, ge=0, description="renew a minted token this long before")
    partition: str | None = None
    account: str | None = None
    cluster_data_dir: str | None = Field(None, description="CIRASA_DATA_DIR as the cluster sees it")
    cluster_jobs_dir: str | None = Field(None, description="CIRASA_JOBS_DIR as the cluster sees it")
    python: str | None = Field(
        None, description="Python on the cluster replacing argv[0] of Python apps (default: argv as is)"
    )
    container_command: str = Field("singularity", description="singularity or apptainer (name or path)")
    container_options: list[str] = Field(
        default_factory=list, description="extra words after `run`, e.g. [--nv] or [--cleanenv]"
    )
    container_bind: bool = Field(True, description="bind the (cluster) data and jobs dirs into the image")
    environment: dict[str, str] = Field(
        default_factory=lambda: {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        description="base environment of every job (Slurm needs at least one variable)",
    )
    request_timeout_s: float = Field(30.0, gt=0)
    verify_tls: bool = True

    @model_validator(mode="after")
    def _one_token_source(self) -> SlurmOptions:
        sources = [
            name
            for name in ("token", "token_file", "token_env", "token_command")
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "exactly one of token, token_file, token_env, token_command must be set"
                + (f" (got {', '.join(sources)})" if sources else "")
            )
        return self

    @field_validator("cluster_data_dir", "cluster_jobs_dir", "python")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path on the cluster")
        return value

    @field_validator("cluster_data_dir", "cluster_jobs_dir")
    @classmethod
    def _bindable(cls, value: str | None) -> str | None:
        if value is not None and ("," in value or ":" in value):
            raise ValueError(f"{value!r}: ',' and ':' cannot be used in a container --bind path")
        return value

    @field_validator("token_command")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("token_command must name a program")
        return value


# -- tokens ---------------------------------------------------------------------------------------


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without checking the signature; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _parse_token_output(text: str) -> str:
    """The token printed by ``scontrol token`` (``SLURM_JWT=...``) or by any command printing it alone."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("SLURM_JWT="):
            line = line.removeprefix("SLURM_JWT=")
        if line:
            return line
    return ""


class TokenSource:
    """Gives the current JWT, renewing it where the configured source allows."""

    def __init__(self, opts: SlurmOptions, clock: Callable[[], float] = time.time) -> None:
        self._opts = opts
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._file_stamp: tuple[int, int] | None = None
        self._warned_expiry: str | None = None

    @property
    def renewable(self) -> bool:
        return self._opts.token is None

    def get(self) -> str:
        with self._lock:
            opts = self._opts
            if opts.token is not None:
                value = opts.token.get_secret_value()
            elif opts.token_env is not None:
                value = os.environ.get(opts.token_env, "").strip()
                if not value:
                    raise SlurmAuthError(f"environment variable {opts.token_env} holds no Slurm token")
            elif opts.token_file is not None:
                value = self._from_file(opts.token_file)
            else:
                value = self._from_command()
            self._warn_if_expiring(value)
            return value

    def invalidate(self, rejected: str) -> bool:
        """slurmrestd rejected ``rejected``: forget it. True when asking again may give another token."""
        with self._lock:
            if self._value == rejected:
                self._value = None
                self._file_stamp = None
        return self.renewable

    def _from_file(self, path: Path) -> str:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if self._value is None or stamp != self._file_stamp:
                value = _parse_token_output(path.read_text(encoding="utf-8"))
                if not value:
                    raise SlurmAuthError(f"token file {path} is empty")
                self._value, self._file_stamp = value, stamp
        except OSError as exc:
            raise SlurmAuthError(f"cannot read the Slurm token file {path}: {exc}") from exc
        return self._value

    def _from_command(self) -> str:
        assert self._opts.token_command is not None
        if self._value is not None:
            exp = jwt_expiry(self._value)
            if exp is None or exp - self._clock() > self._opts.token_renew_before_s:
                return self._value
        argv = self._opts.token_command
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SlurmAuthError(f"token command {argv[0]} could not run: {exc}") from exc
        value = _parse_token_output(done.stdout)
        if done.returncode != 0 or not value:
            raise SlurmAuthError(
                f"token command {argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
            )
        self._value = value
        log.info("slurm.token_renewed", expires_at=jwt_expiry(value))
        return value

    def _warn_if_expiring(self, value: str) -> None:
        exp = jwt_expiry(value)
        if exp is None or exp - self._clock() > self._opts.token_renew_before_s:
            return
        if self._warned_expiry != value:  # once per token
            self._warned_expiry = value
            log.warning("slurm.token_expiring", expires_in_s=round(exp - self._clock()))


# -- the REST client ------------------------------------------------------------------------------


def _error_text(errors: Sequence[Any]) -> str:
    """Slurm's error objects carry ``error_code`` or ``error_number``, ``error`` and ``description``."""
    parts = []
    for err in errors:
        if not isinstance(err, Mapping):
            parts.append(str(err))
            continue
        code = err.get("error_code", err.get("error_number"))
        text = "; ".join(str(err[k]) for k in ("error", "description") if err.get(k))
        parts.append(f"{text or 'error'}" + (f" (error {code})" if code not in (None, 0) else ""))
    return ", ".join(parts)


def _error_codes(errors: Sequence[Any]) -> set[int]:
    codes = set()
    for err in errors:
        if isinstance(err, Mapping):
            code = err.get("error_code", err.get("error_number"))
            if isinstance(code, int):
                codes.add(code)
    return codes


@dataclass(frozen=True)
class SlurmReply:
    status_code: int
    body: dict[str, Any]

    @property
    def errors(self) -> list[Any]:
        errors = self.body.get("errors")
        return errors if isinstance(errors, list) else []


def _is_auth_failure(response: httpx.Response, body: Mapping[str, Any]) -> bool:
    """401, or the 500 slurmrestd 22.05 answers a bad/expired token with ("slurmctld config is unable
    to load", from slurm_load_ctl_conf)."""
    if response.status_code == 401:
        return True
    if response.status_code != 500:
        return False
    errors = body.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, Mapping) and e.get("source") == "slurm_load_ctl_conf" for e in errors
    )


# -- capacity -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmCapacity:
    """What a partition (or the whole cluster) has now, for the planner's calendar."""

    nodes: int
    nodes_unavailable: int
    total_cores: int
    free_cores: int
    total_memory_mb: int
    free_memory_mb: int
    max_free_cores_per_node: int
    max_free_memory_mb_per_node: int
    running_jobs: int
    running_cores: int
    pending_jobs: int
    pending_cores: int


# -- the backend ----------------------------------------------------------------------------------


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
        self._tokens = TokenSource(options, clock)
        self._prefix = f"/slurm/{options.api_version}"
        self._client = httpx.Client(
            base_url=options.url.rstrip("/"),
            timeout=options.request_timeout_s,
            verify=options.verify_tls,
            transport=transport,
        )
        # service path -> cluster path; the longest prefix wins
        maps = [
            (str(Path(data_dir).resolve()), options.cluster_data_dir),
            (str(Path(jobs_dir).resolve()), options.cluster_jobs_dir),
        ]
        self._path_map = sorted(
            ((src, dst.rstrip("/") or "/") for src, dst in maps if dst is not None),
            key=lambda m: len(m[0]),
            reverse=True,
        )
        self._cluster_data_dir = options.cluster_data_dir or str(Path(data_dir).resolve())
        self._cluster_jobs_dir = options.cluster_jobs_dir or str(Path(jobs_dir).resolve())

    @classmethod
    def from_platform(cls, platform: PlatformConfig, settings: Settings) -> SlurmBackend:
        from pydantic import ValidationError

        try:
            options = SlurmOptions.model_validate(platform.options)
        except ValidationError as exc:
            raise SlurmConfigError(f"platform {platform.name}: invalid Slurm options: {exc}") from exc
        return cls(options, data_dir=settings.data_dir, jobs_dir=settings.jobs_dir)

    def close(self) -> None:
        self._client.close()

    # -- HTTP --------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> SlurmReply:
        """One call to slurmrestd; repeated once with a renewed token when the token was rejected."""
        for attempt in range(2):
            token = self._tokens.get()
            headers = {"X-SLURM-USER-NAME": self.options.user, "X-SLURM-USER-TOKEN": token}
            try:
                response = self._client.request(method, self._prefix + path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise SlurmError(
                    f"slurmrestd at {self.options.url} did not answer {method} {path}: {exc!r}"
                ) from exc
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            data: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
            if _is_auth_failure(response, data):
                if attempt == 0 and self._tokens.invalidate(token):
                    continue
                detail = _error_text(data.get("errors") or []) or response.text[:200]
                raise SlurmAuthError(
                    f"slurmrestd rejected the token of user {self.options.user} "
                    f"(HTTP {response.status_code}: {detail})"
                )
            if not isinstance(parsed, dict):
                raise SlurmError(
                    f"slurmrestd {method} {path}: HTTP {response.status_code}, "
                    f"not a JSON object: {response.text[:200]!r}"
                )
            return SlurmReply(response.status_code, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _checked(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> SlurmReply:
        """A call that must succeed: HTTP 2xx **and** an empty ``errors`` list."""
        reply = self._request(method, path, body)
        if reply.status_code >= 300 or reply.errors:
            raise SlurmError(
                f"slurmrestd {method} {path}: HTTP {reply.status_code}: "
                f"{_error_text(reply.errors) or 'no error given'}"
            )
        return reply

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job slurmctld holds (one ``GET /jobs``)."""
        jobs = self._checked("GET", "/jobs").body.get("jobs")
        if not isinstance(jobs, list):
            raise SlurmError("slurmrestd GET /jobs: the answer has no jobs list")
        return [j for j in jobs if isinstance(j, dict)]

    # -- submit ------------------------------------------------------------------------------------

    @staticmethod
    def job_name(job_id: str) -> str:
        if not _SAFE_JOB_ID.match(job_id):
            raise ValueError(f"job id {job_id!r} cannot be used in a Slurm job name")
        return JOB_NAME_PREFIX + job_id

    def submit(self, spec: JobSpec) -> str:
        name = self.job_name(spec.job_id)
        # Idempotency: a redelivered JobSubmitted finds the job its first delivery started. Race window:
        # two submits of one job id running *at the same time* (two scheduler replicas given the same
        # message) can both find nothing and both submit. Slurm has no unique job names, so that is
        # closed after the fact: once submitted, we list again and every caller keeps the lowest job id
        # with this name (ids grow, so all callers agree) and cancels the others, which at that point
        # are almost always still pending. A record purged after MinJobAge cannot be found any more;
        # by then the monitor has long seen its final state.
        existing = self._named(self.list_jobs(), name)
        if existing:
            log.info("slurm.submit_found_existing", job_id=spec.job_id, slurm_job_id=existing[0])
            return str(existing[0])

        # slurmd needs the working directory (and the output files' directory) to exist
        Path(spec.job_dir).mkdir(parents=True, exist_ok=True)
        reply = self._request("POST", "/job/submit", self.submission(spec))
        slurm_id = reply.body.get("job_id")
        if reply.status_code >= 300 or reply.errors or not isinstance(slurm_id, int):
            if isinstance(slurm_id, int):
                # e.g. more CPUs than any node has: HTTP 200, an error, and a job pending forever
                self._delete(slurm_id)
            raise SlurmError(
                f"Slurm refused job {name}: HTTP {reply.status_code}: "
                f"{_error_text(reply.errors) or 'no job id in the answer'}"
            )

        keep = self._named(self.list_jobs(), name) or [slurm_id]
        for duplicate in keep[1:]:
            log.warning("slurm.submit_duplicate_canceled", job_id=spec.job_id, slurm_job_id=duplicate)
            self._delete(duplicate)
        log.info("slurm.submitted", job_id=spec.job_id, slurm_job_id=keep[0])
        return str(keep[0])

    @staticmethod
    def _named(jobs: Sequence[Mapping[str, Any]], name: str) -> list[int]:
        return sorted(j["job_id"] for j in jobs if j.get("name") == name and isinstance(j.get("job_id"), int))

    def submission(self, spec: JobSpec) -> dict[str, Any]:
        """The body of ``POST /job/submit`` for ``spec`` (v0.0.36-v0.0.38 format)."""
        res = spec.resources
        job_dir = self.cluster_path(str(spec.job_dir))
        environment = {
            **self.options.environment,
            **dict.fromkeys(THREAD_ENV_VARS, str(res.cores)),
            **spec.env,
        }
        job: dict[str, Any] = {
            "name": self.job_name(spec.job_id),
            "nodes": [1, 1],  # [min, max]: the apps are single-node
            "tasks": 1,
            "cpus_per_task": res.cores,
            "memory_per_node": math.ceil(res.memory_gib * 1024),
            "time_limit": max(1, math.ceil(res.duration_s / 60)),
            "current_working_directory": job_dir,
            "standard_output": f"{job_dir}/{STDOUT_LOG}",
            "standard_error": f"{job_dir}/{STDERR_LOG}",
            "environment": environment,
        }
        if self.options.partition:
            job["partition"] = self.options.partition
        if self.options.account:
            job["account"] = self.options.account
        return {"script": self.batch_script(spec), "job": job}

    def command(self, spec: JobSpec) -> list[str]:
        """The words the batch script executes, with paths mapped to the cluster's."""
        args = [self.cluster_word(word) for word in spec.argv]
        if spec.image is None:
            if not args:
                raise ValueError(f"job {spec.job_id}: empty command")
            if self.options.python:
                args[0] = self.options.python
            return args
        opts = self.options
        binds = (
            ["--bind", f"{self._cluster_data_dir},{self._cluster_jobs_dir}"] if opts.container_bind else []
        )
        return [
            opts.container_command,
            "run",
            *binds,
            *opts.container_options,
            self._image_ref(spec.image),
            *args,
        ]

    def _image_ref(self, image: str) -> str:
        """A .sif path (mapped like data paths) or a URI as is; a bare docker reference gets docker://."""
        if not image or image.startswith("-") or any(c.isspace() for c in image):
            raise ValueError(f"refusing container image {image!r}")  # it would read as an option
        if image.startswith("/"):
            return self.cluster_path(image)
        if "://" in image:
            return image
        return f"docker://{image}"

    def batch_script(self, spec: JobSpec) -> str:
        words = self.command(spec)
        return "\n".join(
            [
                "#!/bin/bash",
                f"# CIRASA job {self.job_name(spec.job_id)}: every word below is shell-quoted",
                "exec " + " ".join(shlex.quote(word) for word in words),
                "",
            ]
        )

    def cluster_path(self, path: str) -> str:
        """``path`` (a service-side absolute path) as the cluster sees it; unchanged when not mapped."""
        for src, dst in self._path_map:
            if path == src:
                return dst
            if path.startswith(src.rstrip("/") + "/"):
                return dst.rstrip("/") + "/" + path[len(src.rstrip("/")) + 1 :]
        return path

    def cluster_word(self, word: str) -> str:
        """An argument with its path mapped: ``/abs/path`` or ``--flag=/abs/path``."""
        if word.startswith("/"):
            return self.cluster_path(word)
        key, sep, value = word.partition("=")
        if sep and value.startswith("/"):
            return f"{key}={self.cluster_path(value)}"
        return word

    # -- poll / cancel -----------------------------------------------------------------------------

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        if not jobs:
            return {}
        listing = self.list_jobs()
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
            out[job.job_id] = None if record is None else job_status(record, now)
        return out

    def cancel(self, job: TrackedJob) -> None:
        if job.backend_job_id is not None:
            ids = [int(job.backend_job_id)]
        else:
            ids = self._named(self.list_jobs(), JOB_NAME_PREFIX + job.job_id)
        for slurm_id in ids:
            self._delete(slurm_id)

    def _delete(self, slurm_id: int) -> None:
        """``DELETE /job/{id}``; a job Slurm no longer knows is already gone, which is fine."""
        reply = self._request("DELETE", f"/job/{slurm_id}")
        if reply.status_code < 300 and not reply.errors:
            return
        if ERR_INVALID_JOB_ID in _error_codes(reply.errors):
            return
        raise SlurmError(
            f"slurmrestd DELETE /job/{slurm_id}: HTTP {reply.status_code}: {_error_text(reply.errors)}"
        )

    # -- capacity ----------------------------------------------------------------------------------

    def capacity(self) -> SlurmCapacity:
        """Free resources and the queue of the configured partition (all partitions when none is set),
        from ``GET /nodes`` and ``GET /jobs``; nodes drained, down or not responding count as unavailable.
        Needs API v0.0.37 or newer for exact figures (v0.0.36 nodes carry no allocation or partitions).
        """
        nodes = self._checked("GET", "/nodes").body.get("nodes")
        if not isinstance(nodes, list):
            raise SlurmError("slurmrestd GET /nodes: the answer has no nodes list")
        partition = self.options.partition
        usable = unavailable = 0
        total_cores = free_cores = total_mem = free_mem = max_cores = max_mem = 0
        for node in nodes:
            if not isinstance(node, dict):
                continue
            # v0.0.36 reports neither partitions nor allocations per node: all nodes count, all free
            partitions = node.get("partitions")
            if partition and isinstance(partitions, list) and partition not in partitions:
                continue
            if not _node_usable(node):
                unavailable += 1
                continue
            usable += 1
            cpus = _int(node.get("cpus"))
            idle = _int(node.get("idle_cpus"), cpus - _int(node.get("alloc_cpus")))
            mem = _int(node.get("real_memory"))
            mem_free = max(0, mem - _int(node.get("alloc_memory")))
            total_cores += cpus
            free_cores += idle
            total_mem += mem
            free_mem += mem_free
            max_cores = max(max_cores, idle)
            max_mem = max(max_mem, mem_free)
        running = running_cores = pending = pending_cores = 0
        for job in self.list_jobs():
            if partition and job.get("partition") != partition:
                continue
            state = _base_state(job.get("job_state"))
            if state in ("RUNNING", "COMPLETING", "SUSPENDED"):
                running += 1
                running_cores += _int(job.get("cpus"))
            elif state in ("PENDING", "CONFIGURING", "REQUEUED"):
                pending += 1
                pending_cores += max(1, _int(job.get("cpus")))
        return SlurmCapacity(
            nodes=usable,
            nodes_unavailable=unavailable,
            total_cores=total_cores,
            free_cores=free_cores,
            total_memory_mb=total_mem,
            free_memory_mb=free_mem,
            max_free_cores_per_node=max_cores,
            max_free_memory_mb_per_node=max_mem,
            running_jobs=running,
            running_cores=running_cores,
            pending_jobs=pending,
            pending_cores=pending_cores,
        )


# -- reading Slurm's job records ------------------------------------------------------------------


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _node_usable(node: Mapping[str, Any]) -> bool:
    states = {s.upper() for s in str(node.get("state", "")).replace("+", " ").split()}
    flags = {str(f).upper() for f in node.get("state_flags") or []}
    return bool(states & _USABLE_NODE_STATES) and not (states | flags) & _NODE_OUT_FLAGS


def _base_state(value: Any) -> str:
    """``job_state``: a string up to v0.0.38, a list of state + flags from v0.0.39 on."""
    if isinstance(value, list):
        known = [
            str(v).upper() for v in value if str(v).upper() in TERMINAL_SLURM_STATES | _ACTIVE_STATES.keys()
        ]
        return known[0] if known else (str(value[0]).upper() if value else "")
    return str(value or "").upper()


def decode_exit_status(raw: int) -> tuple[int | None, int | None]:
    """Slurm's ``exit_code``, a raw wait status: (return code, None) or (None, signal number).

    (None, None) when it cannot be one: after a launch failure Slurm stores its own error number there
    (e.g. 4021), which has both a "signal" and an "exit code" part.
    """
    signal, code = raw & 0x7F, raw >> 8
    if raw < 0 or code > 0xFF or (signal and code):
        return None, None
    if signal:
        return None, signal
    return code, None


def _stamp(epoch: Any) -> datetime | None:
    value = _int(epoch)
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


def _has_started(record: Mapping[str, Any], state: str) -> bool:
    """Whether the job ever ran. ``start_time`` alone does not say it: it is the *expected* start of a
    pending job, and the cancel time of a job cancelled while pending."""
    if state in _ACTIVE_STATES:
        return _ACTIVE_STATES[state][0] is JobState.RUNNING
    flags = record.get("flags") or []
    return "JOB_WAS_RUNNING" in flags or bool(record.get("batch_host"))


def job_status(record: Mapping[str, Any], now: float) -> BackendStatus:
    """Our view of one Slurm job record (``GET /jobs`` item)."""
    state = _base_state(record.get("job_state"))
    reason = str(record.get("state_reason") or "")
    started = _has_started(record, state)
    started_at = _stamp(record.get("start_time")) if started else None
    finished_at = _stamp(record.get("end_time")) if state in TERMINAL_SLURM_STATES and started else None

    elapsed = 0.0
    if started_at is not None:
        end = finished_at.timestamp() if finished_at is not None else now
        elapsed = max(0.0, end - started_at.timestamp())

    def status(ours: JobState, text: str, exit_code: int = -1) -> BackendStatus:
        return BackendStatus(ours, text, exit_code, elapsed, started_at, finished_at)

    if state in _ACTIVE_STATES:
        ours, text = _ACTIVE_STATES[state]
        if ours is JobState.PENDING and reason not in ("", "None"):
            text = f"{text} ({reason})"
        return status(ours, text)

    raw = _int(record.get("exit_code"))
    code, signal = decode_exit_status(raw)
    if state == "COMPLETED":
        return status(JobState.SUCCESS, "Job completed execution successfully", code or 0)
    if state == "CANCELLED":
        # the project's convention for canceled jobs (local backend, caesar-rest) is exit code -1
        return status(JobState.CANCELED, "Job was canceled", -1)
    if state == "TIMEOUT":
        # 124 like the local backend and coreutils timeout; Slurm's SIGTERM is in the text
        how = f", stopped with signal {signal}" if signal else ""
        return status(JobState.TIMED_OUT, f"Job terminated due to time limit reached{how}", 124)
    if state in _FAILURE_TEXT:
        text = _FAILURE_TEXT[state]
        if signal is not None:
            detail, exit_code = f"killed by signal {signal}", -signal
        elif code:
            detail, exit_code = f"exit code {code}", code
        else:
            detail, exit_code = "", -1
        decoded = code is not None or signal is not None
        extras = [detail] if detail else []
        if reason == "JobLaunchFailure" and not decoded:
            extras.append(
                f"Slurm error {raw}: check that the job directory exists and is writable on the cluster"
            )
        elif reason not in ("", "None", "NonZeroExitCode", "JobLaunchFailure"):
            # (Slurm says JobLaunchFailure also when the batch script was killed by a signal)
            extras.append(reason)
        return status(JobState.FAILURE, text + (f" ({'; '.join(extras)})" if extras else ""), exit_code)
    # an unknown state: keep the job alive (the monitor's reconciliation bounds it) and say what we saw
    ours = JobState.RUNNING if started else JobState.PENDING
    return status(ours, f"Job currently in unknown state (raw state={state or '?'})")
