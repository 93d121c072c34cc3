"""The batch/v1 Job that runs one CIRASA job, as the JSON the API server takes.

A job's staged volumes (``JobSpec.mounts``) are on the data volume: each is one more mount of it, its
``subPath`` the source's path on the volume, at the mount's target. ``mounts.py`` says which targets
are refused; here also the data volume's mount path, which holds the job directory, and any path in it
(the mount point would be made on the shared volume).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from cirasa.backends.base import JobSpec
from cirasa.backends.kubernetes.naming import (
    ANN_JOB_ID,
    ANN_USER,
    CONTAINER_NAME,
    LABEL_APP,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_PLATFORM,
    LABEL_USER,
    MANAGED_BY,
    job_name,
    label_value,
)
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.local_runner import THREAD_ENV_VARS
from cirasa.backends.mounts import SYSTEM_PATHS, Reserved, check_targets, reserved


class PathMapper:
    """Maps service-side paths on the data volume to the same files as seen in a job pod."""

    def __init__(self, service_root: PurePosixPath, mount_path: PurePosixPath) -> None:
        self.service_root = service_root
        self.mount_path = mount_path

    def relative(self, path: str | Path) -> PurePosixPath:
        """``path`` relative to the data volume's root."""
        p = PurePosixPath(str(path))
        try:
            return p.relative_to(self.service_root)
        except ValueError:
            raise ValueError(
                f"{path} is not on the data volume ({self.service_root}), so a job pod cannot see it"
            ) from None

    def path(self, path: str | Path) -> str:
        return str(self.mount_path / self.relative(path))

    def arg(self, arg: str) -> str:
        """An argument naming a path on the volume (``/root/x`` or ``--flag=/root/x``), mapped."""
        root = str(self.service_root).rstrip("/") + "/"
        if arg.startswith(root):
            return self.path(arg)
        flag, eq, value = arg.partition("=")
        if eq and value.startswith(root):
            return f"{flag}={self.path(value)}"
        return arg


def build_job_manifest(
    spec: JobSpec, opts: KubernetesOptions, platform: str, mapper: PathMapper
) -> dict[str, Any]:
    """The batch/v1 Job for ``spec``, as the JSON the API server takes."""
    container = _container(spec, opts, platform, mapper)
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PLATFORM: platform,
        LABEL_JOB_ID: label_value(spec.job_id),
        LABEL_USER: label_value(spec.user),
        LABEL_APP: label_value(spec.app),
    }
    annotations = {ANN_JOB_ID: spec.job_id, ANN_USER: spec.user}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.job_id), "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": spec.resources.duration_s,
            "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": _pod_spec(opts, container),
            },
        },
    }


def _image_and_command(
    spec: JobSpec, opts: KubernetesOptions, platform: str, mapper: PathMapper
) -> tuple[str, dict[str, list[str]]]:
    """The container's image, and its ``args`` (an app image's own entrypoint) or ``command`` (a Python
    app in the runner image)."""
    if spec.image is not None:
        return spec.image, {"args": [mapper.arg(a) for a in spec.argv]}
    if opts.runner_image is None:
        raise ValueError(
            f"platform {platform} runs Python apps in a runner image, but options.runner_image is not set"
        )
    if not spec.argv:
        raise ValueError("argv must not be empty")
    argv = [mapper.arg(a) for a in spec.argv]
    if opts.runner_python:
        argv[0] = opts.runner_python
    return opts.runner_image, {"command": argv}


def _container(spec: JobSpec, opts: KubernetesOptions, platform: str, mapper: PathMapper) -> dict[str, Any]:
    res = spec.resources
    work_dir = mapper.path(spec.job_dir)
    image, command = _image_and_command(spec, opts, platform, mapper)
    env = {
        **spec.env,
        **{name: str(res.cores) for name in THREAD_ENV_VARS},
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "CIRASA_JOB_ID": spec.job_id,
        "CIRASA_JOB_DIR": work_dir,
        "JOB_OUTDIR": work_dir,  # caesar-rest's job images write their products there
    }
    quantities = {"cpu": str(res.cores), "memory": _quantity_memory(res.memory_gib)}
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": opts.image_pull_policy,
        **command,
        "workingDir": work_dir,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": str(mapper.mount_path)},
            {"name": "tmp", "mountPath": "/tmp"},
            *_volume_mounts(spec, mapper),
        ],
        # the tail of the log becomes the termination message of a failed container: the status
        # text can then say why a finder failed without anyone fetching pod logs
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _volume_mounts(spec: JobSpec, mapper: PathMapper) -> list[dict[str, Any]]:
    """One mount of the data volume per staged volume; ValueError for a target or source refused."""
    keep = [
        Reserved(mapper.mount_path, "the data volume's mount path"),
        *reserved(SYSTEM_PATHS, "the system path"),
        Reserved(PurePosixPath("/tmp"), "the pod's", inside_ok=True),
    ]
    mounts: list[dict[str, Any]] = []
    for mount, target in check_targets(spec.mounts, keep):
        sub_path = mapper.relative(mount.source)
        if ".." in sub_path.parts or not sub_path.parts:
            raise ValueError(f"mount source {mount.source} is not a file or directory on the data volume")
        mounts.append(
            {
                "name": "data",
                "mountPath": str(target),
                "subPath": str(sub_path),
                "readOnly": mount.read_only,
            }
        )
    return mounts


def _pod_spec(opts: KubernetesOptions, container: dict[str, Any]) -> dict[str, Any]:
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": opts.run_as_user,
        "runAsGroup": opts.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if opts.fs_group is not None:
        pod_security["fsGroup"] = opts.fs_group
        pod_security["fsGroupChangePolicy"] = "OnRootMismatch"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": opts.data_pvc}},
            {"name": "tmp", "emptyDir": {"sizeLimit": opts.tmp_size_limit}},
        ],
    }
    if opts.service_account:
        pod_spec["serviceAccountName"] = opts.service_account
    if opts.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in opts.image_pull_secrets]
    if opts.node_selector:
        pod_spec["nodeSelector"] = dict(opts.node_selector)
    if opts.priority_class:
        pod_spec["priorityClassName"] = opts.priority_class
    return pod_spec


def _quantity_memory(gib: float) -> str:
    return f"{max(1, round(gib * 1024))}Mi"
