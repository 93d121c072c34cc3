"""What slurmrestd is asked to run: the job description and the batch script, with the service's paths
mapped to the cluster's. The batch script is the only place a shell sees anything: every word in it is
``shlex.quote``-d."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Any

from cirasa.backends.base import JobSpec
from cirasa.backends.local_runner import STDERR_LOG, STDOUT_LOG, THREAD_ENV_VARS
from cirasa.backends.slurm.options import SlurmOptions

JOB_NAME_PREFIX = "cirasa-"
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def job_name(job_id: str) -> str:
    """The Slurm job name of a job: ``cirasa-<job id>``."""
    if not _SAFE_JOB_ID.match(job_id):
        raise ValueError(f"job id {job_id!r} cannot be used in a Slurm job name")
    return JOB_NAME_PREFIX + job_id


class SubmissionBuilder:
    """Turns a :class:`JobSpec` into the body of ``POST /job/submit``."""

    def __init__(self, options: SlurmOptions, *, data_dir: Path, jobs_dir: Path) -> None:
        self.options = options
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
            "name": job_name(spec.job_id),
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
                f"# CIRASA job {job_name(spec.job_id)}: every word below is shell-quoted",
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
