"""What slurmrestd is asked to run: the job description and the batch script, with the service's paths
mapped to the cluster's. The batch script is the only place a shell sees anything: every word in it is
``shlex.quote``-d.

A Slurm job has no mount namespace, so its staged volumes (``JobSpec.mounts``) are linked into its
directory instead: a symbolic link at ``<job dir>/<target without its leading />`` to the source's
cluster path, and ``CIRASA_VOLUMES`` in the job's environment lists ``target=link`` pairs (the link's
cluster path), separated by ``:``. Read-only sources are 0444 (``mounts.share_read_only``); targets are
checked as everywhere (``mounts.py``), and may not hold ``:`` or ``=`` nor land on the job directory's
own files.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirasa.backends.base import JobSpec
from cirasa.backends.local_runner import CONTROL_DIR, STDERR_LOG, STDOUT_LOG, THREAD_ENV_VARS
from cirasa.backends.mounts import SYSTEM_PATHS, check_targets, reserved, share_read_only
from cirasa.backends.slurm.options import SlurmOptions

JOB_NAME_PREFIX = "cirasa-"
VOLUMES_ENV = "CIRASA_VOLUMES"
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_JOB_DIR_OWN = (f"/{CONTROL_DIR}", "/volumes", f"/{STDOUT_LOG}", f"/{STDERR_LOG}")
"""What a volume's link may not be, nor be in: the job directory's control folder, its staged writable
volumes and its logs."""


@dataclass(frozen=True)
class VolumeLink:
    """Where one volume is linked: ``path`` (as the service sees it; ``cluster_path`` as the cluster
    does) is a symbolic link to ``points_to``, the cluster path of ``source``."""

    target: str
    path: Path
    cluster_path: str
    points_to: str
    source: Path
    read_only: bool


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
        links = self.volume_links(spec)
        if links:
            environment[VOLUMES_ENV] = ":".join(f"{link.target}={link.cluster_path}" for link in links)
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

    # -- volumes -----------------------------------------------------------------------------------

    def volume_links(self, spec: JobSpec) -> list[VolumeLink]:
        """Where each of the job's volumes is linked; ValueError for a mount refused."""
        keep = reserved(SYSTEM_PATHS, "the system path") + reserved(_JOB_DIR_OWN, "the job directory's")
        job_dir = Path(spec.job_dir)
        cluster_job_dir = self.cluster_path(str(job_dir)).rstrip("/")
        links: list[VolumeLink] = []
        for mount, target in check_targets(spec.mounts, keep, forbidden_chars=":="):
            rel = str(target).lstrip("/")
            link = VolumeLink(
                target=str(target),
                path=job_dir / rel,
                cluster_path=f"{cluster_job_dir}/{rel}",
                points_to=self.cluster_path(str(mount.source)),
                source=Path(mount.source),
                read_only=mount.read_only,
            )
            if ":" in link.cluster_path:
                raise ValueError(f"the link of mount target {target}, {link.cluster_path}, contains ':'")
            links.append(link)
        return links

    def link_volumes(self, spec: JobSpec) -> list[VolumeLink]:
        """Make the job's volume links in its directory (which must exist); a link already there and
        right is kept, so a submit can be repeated. ValueError for a mount refused."""
        links = self.volume_links(spec)
        for link in links:
            if not os.path.lexists(link.source):
                raise ValueError(f"mount source {link.source} does not exist")
            if link.read_only:
                try:
                    share_read_only(link.source)
                except PermissionError as exc:
                    raise ValueError(f"mount source {link.source} cannot be made read-only: {exc}") from exc
            _make_link(Path(spec.job_dir), link)
        return links


def _make_link(job_dir: Path, link: VolumeLink) -> None:
    directory = job_dir
    for part in link.path.parent.relative_to(job_dir).parts:
        directory = directory / part
        if directory.is_symlink():  # it would make the link somewhere else, maybe in a source
            raise ValueError(f"mount target {link.target}: {directory} is a symbolic link")
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o755)
        if not directory.is_dir():
            raise ValueError(f"mount target {link.target}: {directory} is not a directory")
    if link.path.is_symlink():
        if os.readlink(link.path) == link.points_to:
            return
        link.path.unlink()
    elif os.path.lexists(link.path):
        raise ValueError(f"mount target {link.target}: {link.path} is already in the job directory")
    os.symlink(link.points_to, link.path)
