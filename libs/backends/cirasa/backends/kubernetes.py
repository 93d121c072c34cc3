"""Kubernetes backend: one batch/v1 Job per accepted offer, followed by watching Jobs and their pods.

**Sync facade over an asyncio client.** The Backend protocol is synchronous (the scheduler and the
monitor call it through ``asyncio.to_thread``), but following Jobs means long-lived watch streams that
must keep running *between* calls. So each backend owns a private event loop in a daemon thread: all
kubernetes-asyncio objects, the watches and the cache live on that loop (single-threaded, no locks),
and the public methods hand coroutines to it with ``run_coroutine_threadsafe`` and wait with a
timeout. Running on the service's own loop is not an option: the protocol gives us no handle to it,
and a blocking call from a worker thread into it would serialise the monitor behind the API server.

**Idempotent submit.** The Job name is derived from the job id (``cirasa-<first 40 hex>``), so a
redelivered JobSubmitted gets 409 Conflict and returns the existing Job.

**State without one GET per job.** Jobs and their pods are kept in a cache fed by a LIST followed
by a WATCH (label selector ``app.kubernetes.io/managed-by=cirasa,cirasa.io/platform=<name>``),
resumed from the last resourceVersion after a dropped stream, fully re-listed every
``relist_interval_s`` and at once after 410 Gone. ``poll`` only reads that cache. A job missing from
it is declared vanished only after one fresh LIST (one call for all missing jobs, not per job) has
confirmed it: a watch that lags behind a just-created Job must not fail it.

**Final states survive deletion.** When a finished Job disappears (``ttlSecondsAfterFinished``, a
cancel) its last status is kept as a tombstone for ``tombstone_ttl_s``, and the pods of a Job are kept
until the Job itself goes, so exit codes are not lost when the TTL controller deletes pods first. The
monitor therefore sees the final state even when the TTL is shorter than its poll interval -- as long
as this backend's watch was running when the Job finished. The TTL (default 1 h) only has to cover a
monitor *restart*: a Job finished and deleted while no monitor watched is reported as vanished.

**Cancel** annotates the Job with ``cirasa.io/cancel-requested`` and deletes it (propagationPolicy
Background). The annotation travels with the DELETED event, so the monitor -- another process --
reports CANCELED rather than "vanished".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cirasa.backends.base import BackendStatus, BackendUnavailable, JobSpec, TrackedJob
from cirasa.backends.local_runner import THREAD_ENV_VARS
from cirasa.common.events import JobState
from cirasa.common.settings import PlatformConfig, Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

CONTAINER_NAME = "job"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "cirasa"
LABEL_PLATFORM = "cirasa.io/platform"
LABEL_JOB_ID = "cirasa.io/job-id"
LABEL_USER = "cirasa.io/user"
LABEL_APP = "cirasa.io/app"
ANN_JOB_ID = "cirasa.io/job-id"
ANN_USER = "cirasa.io/user"
ANN_CANCEL = "cirasa.io/cancel-requested"

TIMEOUT_EXIT_CODE = 124  # as the local runner: coreutils ``timeout``'s convention
CANCEL_EXIT_CODE = -1
POD_SETTLE_S = 5.0
"""How long a failed Job waits for its pod's final status (exit code, reason) to be watched."""
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# Waiting reasons that mean the container will not start as things are; the first two are
# retried by the kubelet, so they become a failure only after ``image_pull_grace_s``.
_RETRIED_START_ERRORS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError"}
)
_PERMANENT_START_ERRORS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_IMAGE_ERRORS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
_NOT_HEX = re.compile(r"[^0-9a-f]")


# -- options ------------------------------------------------------------------------------------


class KubernetesOptions(BaseModel):
    """``PlatformConfig.options`` of a kubernetes platform."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None, description="where Jobs go; default: the service account's or the kubeconfig context's"
    )
    in_cluster: bool = Field(False, description="use the pod's service account instead of a kubeconfig")
    kubeconfig: Path | None = Field(None, description="kubeconfig file; default ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context; default its current one")
    data_pvc: str = Field(description="claim of the shared data volume (uploads and job directories)")
    mount_path: str = Field("/data", description="where the data volume is mounted in job pods")
    service_root: Path | None = Field(
        None,
        description="where the services see the data volume's root (paths under it are mapped to "
        "mount_path in job pods); default: the same path as mount_path",
    )
    runner_image: str | None = Field(None, description="image that runs the Python apps (the cirasa image)")
    runner_python: str | None = Field(
        None, description="interpreter in the runner image; default: the scheduler's own path"
    )
    service_account: str | None = Field(None, description="service account of job pods (no token mounted)")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority_class: str | None = None
    run_as_user: int = Field(10001, ge=1, description="non-root uid of job pods (the services' uid)")
    run_as_group: int = Field(10001, ge=0)
    fs_group: int | None = Field(None, ge=0, description="unset: no recursive chown of the data volume")
    tmp_size_limit: str = Field("1Gi", description="emptyDir at /tmp (the root filesystem is read-only)")
    ttl_seconds_after_finished: int = Field(
        3600,
        ge=0,
        description="finished Jobs are deleted after this; must exceed the longest monitor outage",
    )
    relist_interval_s: float = Field(300.0, gt=0, description="full re-list of Jobs and pods")
    watch_timeout_s: int = Field(240, ge=1, description="server-side timeout of one watch request")
    image_pull_grace_s: float = Field(
        120.0, ge=0, description="a container that cannot be pulled or created this long fails the job"
    )
    sync_timeout_s: float = Field(10.0, gt=0, description="first poll waits this long for the first LIST")
    request_timeout_s: float = Field(30.0, gt=0)
    tombstone_ttl_s: float = Field(86400.0, gt=0, description="how long final states of deleted Jobs stay")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"namespace {value!r} is not a DNS-1123 label")
        return value

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"mount_path {value!r} must be an absolute path without '..'")
        return str(path)

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesOptions:
        if self.in_cluster and (self.kubeconfig is not None or self.context is not None):
            raise ValueError("in_cluster excludes kubeconfig and context")
        return self


# -- naming ---------------------------------------------------------------------------------------


def job_name(job_id: str) -> str:
    """The Job's name: ``cirasa-<first 40 hex of the id>``; ids that are not hex are hashed."""
    hexid = _NOT_HEX.sub("", job_id.lower())
    if len(hexid) < 16 or len(hexid) != len(job_id.replace("-", "")):
        hexid = hashlib.sha256(job_id.encode()).hexdigest()
    return f"cirasa-{hexid[:40]}"


def label_value(value: str) -> str:
    """``value`` as a valid label value (63 chars, alphanumeric ends); long values keep a hash suffix."""
    if _LABEL_VALUE.match(value):
        return value
    cleaned = _NOT_LABEL_CHAR.sub("_", value).strip("_.-")
    if len(cleaned) > 63 or cleaned != value:
        digest = hashlib.sha256(value.encode()).hexdigest()[:10]
        cleaned = f"{cleaned[:52].rstrip('_.-')}-{digest}".lstrip("_.-")
    return cleaned or "unknown"


def _quantity_memory(gib: float) -> str:
    return f"{max(1, round(gib * 1024))}Mi"


# -- the Job manifest ---------------------------------------------------------------------------


class PathMapper:
    """Maps service-side paths on the data volume to the same files as seen in a job pod."""

    def __init__(self, service_root: PurePosixPath, mount_path: PurePosixPath) -> None:
        self.service_root = service_root
        self.mount_path = mount_path

    def path(self, path: str | Path) -> str:
        p = PurePosixPath(str(path))
        try:
            rel = p.relative_to(self.service_root)
        except ValueError:
            raise ValueError(
                f"{path} is not on the data volume ({self.service_root}), so a job pod cannot see it"
            ) from None
        return str(self.mount_path / rel)

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
    res = spec.resources
    work_dir = mapper.path(spec.job_dir)
    if spec.image is not None:
        image = spec.image
        command: dict[str, list[str]] = {"args": [mapper.arg(a) for a in spec.argv]}
    else:
        if opts.runner_image is None:
            raise ValueError(
                f"platform {platform} runs Python apps in a runner image, but options.runner_image is not set"
            )
        if not spec.argv:
            raise ValueError("argv must not be empty")
        image = opts.runner_image
        argv = [mapper.arg(a) for a in spec.argv]
        if opts.runner_python:
            argv[0] = opts.runner_python
        command = {"command": argv}
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PLATFORM: platform,
        LABEL_JOB_ID: label_value(spec.job_id),
        LABEL_USER: label_value(spec.user),
        LABEL_APP: label_value(spec.app),
    }
    annotations = {ANN_JOB_ID: spec.job_id, ANN_USER: spec.user}
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
    container: dict[str, Any] = {
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
        ],
        # the tail of the log becomes the termination message of a failed container: the status
        # text can then say why a finder failed without anyone fetching pod logs
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
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
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.job_id), "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": res.duration_s,
            "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": pod_spec,
            },
        },
    }


# -- reading Job and pod status -----------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dig(obj: Mapping[str, Any] | None, *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _job_id_of(obj: Mapping[str, Any]) -> str | None:
    value = _dig(obj, "metadata", "annotations", ANN_JOB_ID) or _dig(obj, "metadata", "labels", LABEL_JOB_ID)
    return value if isinstance(value, str) else None


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conds = _dig(job, "status", "conditions") or []
    return {c.get("type", ""): c for c in conds if isinstance(c, Mapping) and c.get("status") == "True"}


def _container_status(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    statuses = [s for s in (_dig(pod, "status", "containerStatuses") or []) if isinstance(s, Mapping)]
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return status
    return statuses[0] if statuses else None


def _terminated(cs: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    term = _dig(cs, "state", "terminated") or _dig(cs, "lastState", "terminated")
    return term if isinstance(term, Mapping) else None


def _newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not pods:
        return None
    return max(
        pods, key=lambda p: (str(_dig(p, "metadata", "creationTimestamp") or ""), _dig(p, "metadata", "name"))
    )


def _pod_unfinished(pods: Sequence[Mapping[str, Any]]) -> bool:
    pod = _newest_pod(pods)
    if pod is None:
        return False
    phase = _dig(pod, "status", "phase")
    return phase not in ("Failed", "Succeeded") and _terminated(_container_status(pod)) is None


def _memory_limit(job: Mapping[str, Any]) -> str | None:
    for c in _dig(job, "spec", "template", "spec", "containers") or []:
        if isinstance(c, Mapping) and c.get("name") == CONTAINER_NAME:
            value = _dig(c, "resources", "limits", "memory")
            return str(value) if value is not None else None
    return None


def _last_line(message: Any, limit: int = 300) -> str:
    if not isinstance(message, str):
        return ""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


@dataclass(frozen=True)
class StartProblem:
    """A container that cannot start: an image pull or configuration error."""

    reason: str
    message: str
    image: str
    permanent: bool

    def text(self) -> str:
        what = (
            f"Image {self.image} could not be pulled"
            if self.reason in _IMAGE_ERRORS
            else ("The job's container could not be created")
        )
        return f"{what} ({self.reason})" + (f": {self.message}" if self.message else "")


def start_problem(pods: Sequence[Mapping[str, Any]]) -> StartProblem | None:
    cs = _container_status(_newest_pod(pods))
    waiting = _dig(cs, "state", "waiting")
    reason = _dig(waiting, "reason")
    if reason not in _RETRIED_START_ERRORS and reason not in _PERMANENT_START_ERRORS:
        return None
    return StartProblem(
        reason=str(reason),
        message=str(_dig(waiting, "message") or ""),
        image=str(_dig(cs, "image") or "?"),
        permanent=reason in _PERMANENT_START_ERRORS,
    )


def _pod_failure(job: Mapping[str, Any], pod: Mapping[str, Any] | None) -> tuple[str | None, int]:
    """Why the pod failed, in words, and the container's exit code (-1 when unknown)."""
    cs = _container_status(pod)
    term = _terminated(cs)
    exit_code = int(term["exitCode"]) if term and isinstance(term.get("exitCode"), int) else -1
    pod_reason = _dig(pod, "status", "reason")
    pod_message = _dig(pod, "status", "message") or ""
    code = f"; exit code {exit_code}" if exit_code != -1 else ""
    if pod_reason == "Evicted":
        return f"Job's pod was evicted (Evicted): {pod_message}".rstrip(": ") + code, exit_code
    if term is not None:
        reason = term.get("reason")
        if reason == "OOMKilled":
            limit = _memory_limit(job)
            at = f" at its limit of {limit}" if limit else ""
            return f"Job ran out of memory{at} and was killed (OOMKilled){code}", exit_code
        if reason in ("ContainerCannotRun", "StartError"):
            return f"Job could not be started ({reason}): {_last_line(term.get('message'))}{code}", exit_code
        if exit_code != -1:
            tail = _last_line(term.get("message"))
            return f"Process terminated with return code {exit_code}" + (
                f": {tail}" if tail else ""
            ), exit_code
    if pod_reason:
        return f"Job's pod failed ({pod_reason}): {pod_message}".rstrip(": "), exit_code
    return None, exit_code


def job_status(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> BackendStatus:
    """Our view of a Job from its object and its pods (as cached from the watches)."""
    now = now or datetime.now(UTC)
    conds = _true_conditions(job)
    pod = _newest_pod(pods)
    cs = _container_status(pod)
    term = _terminated(cs)
    started_at = _time(_dig(cs, "state", "running", "startedAt")) or _time(_dig(term, "startedAt"))

    def elapsed(finished: datetime | None) -> float:
        if started_at is None:
            return 0.0
        return max(0.0, ((finished or now) - started_at).total_seconds())

    done = conds.get("Complete") or conds.get("SuccessCriteriaMet")
    if done is not None:
        finished = _time(_dig(job, "status", "completionTime")) or _time(_dig(term, "finishedAt"))
        finished = finished or _time(done.get("lastTransitionTime"))
        started_at = started_at or _time(_dig(job, "status", "startTime"))
        return BackendStatus(
            JobState.SUCCESS,
            "Process terminated with success",
            exit_code=0,
            elapsed_s=elapsed(finished),
            started_at=started_at,
            finished_at=finished,
        )
    failed = conds.get("Failed") or conds.get("FailureTarget")
    if failed is not None:
        finished = _time(_dig(term, "finishedAt")) or _time(failed.get("lastTransitionTime")) or now
        reason = failed.get("reason") or "Failed"
        if reason == "DeadlineExceeded":
            limit = _dig(job, "spec", "activeDeadlineSeconds")
            return BackendStatus(
                JobState.TIMED_OUT,
                f"Job exceeded its wall-time limit of {limit} s (DeadlineExceeded)",
                exit_code=TIMEOUT_EXIT_CODE,
                elapsed_s=elapsed(finished),
                started_at=started_at,
                finished_at=finished,
            )
        text, exit_code = _pod_failure(job, pod)
        if text is None:
            message = failed.get("message") or ""
            text = f"Job failed ({reason})" + (f": {message}" if message else "")
        return BackendStatus(
            JobState.FAILURE,
            text,
            exit_code=exit_code,
            elapsed_s=elapsed(finished),
            started_at=started_at,
            finished_at=finished,
        )
    if _dig(job, "metadata", "annotations", ANN_CANCEL):
        return BackendStatus(
            JobState.CANCELED,
            "Job canceled by user",
            exit_code=CANCEL_EXIT_CODE,
            elapsed_s=elapsed(now),
            started_at=started_at,
            finished_at=now,
        )
    if _dig(cs, "state", "running") is not None or _dig(pod, "status", "phase") == "Running":
        return BackendStatus(
            JobState.RUNNING, "Process is running", elapsed_s=elapsed(None), started_at=started_at
        )
    if term is not None:
        # the container ended but the Job controller has not said so yet: still running for us
        return BackendStatus(
            JobState.RUNNING, "Process has ended", elapsed_s=elapsed(None), started_at=started_at
        )
    problem = start_problem(pods)
    if problem is not None:
        return BackendStatus(JobState.PENDING, f"{problem.text()}; retrying")
    for cond in _dig(pod, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            why = cond.get("message") or cond.get("reason") or "no node fits"
            return BackendStatus(JobState.PENDING, f"Waiting for a node: {why}")
    waiting = _dig(cs, "state", "waiting", "reason")
    if waiting:
        return BackendStatus(JobState.PENDING, f"Job is starting ({waiting})")
    return BackendStatus(JobState.PENDING, "Job is waiting to start")


# -- list + watch into a cache --------------------------------------------------------------------


ListFn = Callable[..., Awaitable[Any]]


async def _raw_json(call: Awaitable[Any]) -> dict[str, Any]:
    """The JSON body of a call made with ``_preload_content=False``; ApiException on an error status."""
    resp = await call
    try:
        data = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status <= 299:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body = data.decode("utf-8", errors="replace")
        raise exc
    body: dict[str, Any] = json.loads(data)
    return body


class Informer:
    """One kind (Jobs or pods) of one namespace and label selector: LIST, then WATCH from its
    resourceVersion; resume after a dropped stream, re-list periodically and after 410 Gone."""

    def __init__(
        self,
        kind: str,
        list_fn: ListFn,
        namespace: str,
        selector: str,
        opts: KubernetesOptions,
        on_delete: Callable[[dict[str, Any]], None],
    ) -> None:
        self.kind = kind
        self._list_fn = list_fn
        self._namespace = namespace
        self._selector = selector
        self._opts = opts
        self._on_delete = on_delete
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.lists = 0
        self.gone = 0
        self._next_relist = 0.0

    async def list_now(self) -> tuple[dict[str, dict[str, Any]], str]:
        """A fresh LIST (objects by name, and its resourceVersion), not applied to the cache."""
        body = await _raw_json(
            self._list_fn(
                self._namespace,
                label_selector=self._selector,
                _preload_content=False,
                _request_timeout=self._opts.request_timeout_s,
            )
        )
        items = {item["metadata"]["name"]: item for item in body.get("items") or []}
        return items, str(_dig(body, "metadata", "resourceVersion") or "")

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self.resource_version is None or time.monotonic() >= self._next_relist:
                    await self._relist()
                await self._watch()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    log.info("kubernetes.watch_gone", kind=self.kind, resource_version=self.resource_version)
                    self.gone += 1
                    self.resource_version = None  # expired: only a full re-list is consistent again
                    continue
                log.warning("kubernetes.watch_failed", kind=self.kind, status=exc.status, reason=exc.reason)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
                log.warning("kubernetes.watch_failed", kind=self.kind, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _relist(self) -> None:
        started = time.monotonic()
        items, resource_version = await self.list_now()
        old, self.objects = self.objects, items
        self.resource_version = resource_version or None
        self.lists += 1
        self._next_relist = started + self._opts.relist_interval_s
        for name, obj in old.items():
            if name not in items:
                self._on_delete(obj)
        self.synced.set()

    async def _watch(self) -> None:
        timeout = max(1, min(self._opts.watch_timeout_s, int(self._next_relist - time.monotonic())))
        w = k8s_watch.Watch(return_type="object")  # raw dicts: no model round trip
        async with w:
            stream = w.stream(
                self._list_fn,
                self._namespace,
                label_selector=self._selector,
                resource_version=self.resource_version,
                timeout_seconds=timeout,
                allow_watch_bookmarks=True,
                _request_timeout=aiohttp.ClientTimeout(
                    connect=self._opts.request_timeout_s, sock_read=timeout + 30
                ),
            )
            async for event in stream:
                self._apply(event["type"], event["raw_object"])

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        rv = _dig(obj, "metadata", "resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.objects[obj["metadata"]["name"]] = obj
        elif kind == "DELETED":
            self.objects.pop(obj["metadata"]["name"], None)
            self._on_delete(obj)
        if rv:
            self.resource_version = str(rv)


# -- the backend ---------------------------------------------------------------------------------


class _LoopThread:
    """An event loop running in a daemon thread, and a way to wait for coroutines on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise BackendUnavailable(f"the Kubernetes API did not answer within {timeout:g} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class KubernetesBackend:
    """The :class:`~cirasa.backends.base.Backend` protocol on Kubernetes Jobs.

    The backend job id is the Job's name.
    """

    kind = "kubernetes"

    def __init__(self, platform: PlatformConfig, settings: Settings | None = None) -> None:
        try:
            self.options = KubernetesOptions.model_validate(platform.options)
        except ValidationError as exc:
            raise ValueError(f"platform {platform.name}: invalid kubernetes options: {exc}") from exc
        self.platform = platform.name
        root = self.options.service_root or Path(self.options.mount_path)
        self.mapper = PathMapper(PurePosixPath(str(root)), PurePosixPath(self.options.mount_path))
        self.selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_PLATFORM}={self.platform}"
        self.namespace: str | None = self.options.namespace
        self._runner = _LoopThread(f"k8s-{self.platform}")
        self._api: k8s.ApiClient | None = None
        self._api_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.jobs: Informer | None = None
        self.pods: Informer | None = None
        self._pod_ghosts: dict[str, dict[str, dict[str, Any]]] = {}  # job id -> pod name -> last pod
        self._tombstones: dict[str, tuple[BackendStatus, float]] = {}  # job id -> (final status, expiry)
        self._start_problems: dict[str, float] = {}  # job id -> monotonic time first seen
        self._settling: dict[str, float] = {}  # job id -> monotonic time its failure was first seen
        self._sync_waited = False
        self._closed = False

    # public, synchronous ------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        manifest = build_job_manifest(spec, self.options, self.platform, self.mapper)
        Path(spec.job_dir).mkdir(parents=True, exist_ok=True)
        return self._call(self._submit(spec.job_id, manifest), self.options.request_timeout_s * 8)

    def cancel(self, job: TrackedJob) -> None:
        self._call(self._cancel(job.job_id), self.options.request_timeout_s * 3)

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        timeout = self.options.sync_timeout_s + self.options.request_timeout_s + 5
        return self._call(self._poll([j.job_id for j in jobs]), timeout)

    def close(self) -> None:
        """Stop the watches and the loop thread (tests; services just exit)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BackendUnavailable, RuntimeError):
            self._runner.call(self._shutdown(), 10)
        self._runner.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._closed:
            coro.close()
            raise BackendUnavailable(f"the kubernetes backend of {self.platform} is closed")
        return self._runner.call(coro, timeout)

    # on the loop --------------------------------------------------------------------------------

    async def _client(self) -> tuple[k8s.ApiClient, str]:
        """The API client and the namespace, connecting on first use."""
        if self._api is None:
            if self._api_lock is None:
                self._api_lock = asyncio.Lock()
            async with self._api_lock:
                if self._api is None:
                    self._api = await self._connect()
        assert self.namespace is not None
        return self._api, self.namespace

    async def _batch(self) -> tuple[k8s.BatchV1Api, str]:
        api, namespace = await self._client()
        return k8s.BatchV1Api(api), namespace

    async def _connect(self) -> k8s.ApiClient:
        cfg = k8s.Configuration()
        context_namespace: str | None = None
        try:
            if self.options.in_cluster:
                k8s_config.load_incluster_config(client_configuration=cfg)
                with contextlib.suppress(OSError):
                    context_namespace = (await asyncio.to_thread(SERVICE_ACCOUNT_NAMESPACE.read_text)).strip()
            else:
                path = str(self.options.kubeconfig) if self.options.kubeconfig else None
                loader = await k8s_config.load_kube_config(
                    config_file=path,
                    context=self.options.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
                context_namespace = _dig(loader.current_context, "context", "namespace")
                # exec plugins and GCP tokens expire; the helper returns at once for other users
                self._tasks.append(asyncio.create_task(k8s_config.refresh_token(loader, cfg)))
        except (k8s_config.ConfigException, OSError) as exc:
            raise BackendUnavailable(f"platform {self.platform}: no Kubernetes configuration: {exc}") from exc
        if self.namespace is None:
            self.namespace = context_namespace if isinstance(context_namespace, str) else "default"
        return k8s.ApiClient(configuration=cfg)

    async def _retrying(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """``make()`` with retries on transient errors (5xx, 429, connection); BackendUnavailable after."""
        delay = 0.5
        for attempt in range(3):
            try:
                return await make()
            except ApiException as exc:
                if exc.status not in (429, 500, 502, 503, 504) or attempt == 2:
                    raise
                error = f"{exc.status} {exc.reason}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt == 2:
                    raise BackendUnavailable(
                        f"Kubernetes API unreachable while trying to {what}: {exc!r}"
                    ) from exc
                error = repr(exc)
            log.warning("kubernetes.retry", what=what, error=error, attempt=attempt + 1)
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def _submit(self, job_id: str, manifest: dict[str, Any]) -> str:
        api, ns = await self._batch()
        name = manifest["metadata"]["name"]
        body: Any = manifest  # the client sends a dict as it is: no model round trip
        for _ in range(2):
            try:
                await self._retrying(
                    "create a Job",
                    lambda: _raw_json(
                        api.create_namespaced_job(
                            ns,
                            body,
                            _preload_content=False,
                            _request_timeout=self.options.request_timeout_s,
                        )
                    ),
                )
                log.info("kubernetes.job_created", job_id=job_id, job=name, namespace=ns)
                return str(name)
            except ApiException as exc:
                if exc.status != 409:
                    raise BackendUnavailable(_api_error(f"Kubernetes refused Job {name}", exc)) from exc
            try:
                existing = await self._retrying(
                    "read a Job",
                    lambda: _raw_json(
                        api.read_namespaced_job(
                            name, ns, _preload_content=False, _request_timeout=self.options.request_timeout_s
                        )
                    ),
                )
            except ApiException as exc:
                if exc.status == 404:
                    continue  # deleted between our create and our read: create again
                raise BackendUnavailable(_api_error(f"cannot read Job {name}", exc)) from exc
            if _job_id_of(existing) != job_id:
                raise BackendUnavailable(
                    f"Job {name} exists in {ns} but belongs to job {_job_id_of(existing)}"
                )
            log.info("kubernetes.job_exists", job_id=job_id, job=name, namespace=ns)
            return str(name)
        raise BackendUnavailable(f"Job {name} keeps disappearing while it is being created")

    async def _cancel(self, job_id: str) -> None:
        api, ns = await self._batch()
        name = job_name(job_id)
        patch = {"metadata": {"annotations": {ANN_CANCEL: datetime.now(UTC).isoformat()}}}
        try:
            await self._retrying(
                "mark a Job canceled",
                lambda: _raw_json(
                    api.patch_namespaced_job(
                        name, ns, patch, _preload_content=False,
                        _request_timeout=self.options.request_timeout_s,
                    )
                ),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return
            raise BackendUnavailable(_api_error(f"cannot cancel Job {name}", exc)) from exc
        await self._delete(name)
        log.info("kubernetes.job_canceled", job_id=job_id, job=name)

    async def _delete(self, name: str) -> None:
        api, ns = await self._batch()
        options = k8s.V1DeleteOptions(propagation_policy="Background")
        try:
            await self._retrying(
                "delete a Job",
                lambda: _raw_json(
                    api.delete_namespaced_job(
                        name, ns, body=options,
                        _preload_content=False, _request_timeout=self.options.request_timeout_s,
                    )
                ),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise BackendUnavailable(_api_error(f"cannot delete Job {name}", exc)) from exc

    async def _ensure_informers(self) -> tuple[Informer, Informer]:
        if self.jobs is None or self.pods is None:
            api, ns = await self._client()
            batch, core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
            self.jobs = Informer(
                "jobs", batch.list_namespaced_job, ns, self.selector, self.options, self._job_gone
            )
            self.pods = Informer(
                "pods", core.list_namespaced_pod, ns, self.selector, self.options, self._pod_gone
            )
            self._tasks += [asyncio.create_task(self.jobs.run()), asyncio.create_task(self.pods.run())]
        return self.jobs, self.pods

    def _pods_by_job(self) -> dict[str, list[dict[str, Any]]]:
        by_job: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in self._pod_ghosts.items()}
        assert self.pods is not None
        for pod in self.pods.objects.values():
            job_id = _job_id_of(pod)
            if job_id is not None:
                by_job.setdefault(job_id, {})[pod["metadata"]["name"]] = pod
        return {k: list(v.values()) for k, v in by_job.items()}

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        """Keep a deleted pod while its Job exists: the TTL controller deletes pods before the Job."""
        job_id = _job_id_of(pod)
        if job_id is not None and self.jobs is not None and job_name(job_id) in self.jobs.objects:
            self._pod_ghosts.setdefault(job_id, {})[pod["metadata"]["name"]] = pod

    def _job_gone(self, job: dict[str, Any]) -> None:
        """A Job was deleted: remember its final state (or that it was canceled)."""
        job_id = _job_id_of(job)
        if job_id is None:
            return
        pods = self._pods_by_job().get(job_id, [])
        status = job_status(job, pods)
        if status.state.is_terminal and job_id not in self._tombstones:
            self._tombstones[job_id] = (status, time.monotonic() + self.options.tombstone_ttl_s)
        self._pod_ghosts.pop(job_id, None)
        self._start_problems.pop(job_id, None)
        self._settling.pop(job_id, None)

    async def _poll(self, job_ids: Iterable[str]) -> dict[str, BackendStatus | None]:
        jobs, pods = await self._ensure_informers()
        if not (jobs.synced.is_set() and pods.synced.is_set()):
            # only the first poll waits long; later ones must not stall the monitor during an outage
            wait = self.options.sync_timeout_s if not self._sync_waited else 1.0
            self._sync_waited = True
            try:
                await asyncio.wait_for(asyncio.gather(jobs.synced.wait(), pods.synced.wait()), wait)
            except TimeoutError:
                raise BackendUnavailable(
                    f"platform {self.platform}: Jobs in namespace {self.namespace} could not be listed "
                    f"within {self.options.sync_timeout_s:g} s"
                ) from None
        now_mono = time.monotonic()
        for job_id in [k for k, (_, expiry) in self._tombstones.items() if expiry < now_mono]:
            del self._tombstones[job_id]
        pods_by_job = self._pods_by_job()
        result: dict[str, BackendStatus | None] = {}
        missing: list[str] = []
        for job_id in job_ids:
            tomb = self._tombstones.get(job_id)
            obj = jobs.objects.get(job_name(job_id))
            if tomb is not None:
                result[job_id] = tomb[0]
            elif obj is not None and _job_id_of(obj) == job_id:
                result[job_id] = await self._status(job_id, obj, pods_by_job.get(job_id, []))
            else:
                missing.append(job_id)
        if missing:
            # the watch may lag behind a Job created a moment ago: one LIST decides for all of them
            try:
                listed, _ = await jobs.list_now()
            except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise BackendUnavailable(f"platform {self.platform}: cannot list Jobs: {exc!r}") from exc
            for job_id in missing:
                obj = listed.get(job_name(job_id))
                if obj is not None and _job_id_of(obj) == job_id:
                    result[job_id] = await self._status(job_id, obj, pods_by_job.get(job_id, []))
                else:
                    result[job_id] = self._tombstones.get(job_id, (None, 0.0))[0]
        return result

    async def _status(self, job_id: str, job: dict[str, Any], pods: list[dict[str, Any]]) -> BackendStatus:
        status = job_status(job, pods)
        if status.state is JobState.FAILURE and _pod_unfinished(pods):
            # The Job watch can overtake the pod watch: give the pod's exit code and reason a moment to
            # arrive rather than record a failure without them.
            first = self._settling.setdefault(job_id, time.monotonic())
            if time.monotonic() - first < POD_SETTLE_S:
                state = JobState.PENDING if status.started_at is None else JobState.RUNNING
                return BackendStatus(
                    state, "Job failed; reading its pod's exit status", started_at=status.started_at
                )
        self._settling.pop(job_id, None)
        if status.state is not JobState.PENDING:
            self._start_problems.pop(job_id, None)
            return status
        problem = start_problem(pods)
        if problem is None:
            self._start_problems.pop(job_id, None)
            return status
        first = self._start_problems.setdefault(job_id, time.monotonic())
        if not problem.permanent and time.monotonic() - first < self.options.image_pull_grace_s:
            return status
        # the kubelet would keep retrying until activeDeadlineSeconds: give up now and free the slot
        final = BackendStatus(JobState.FAILURE, problem.text(), exit_code=-1, finished_at=datetime.now(UTC))
        self._tombstones[job_id] = (final, time.monotonic() + self.options.tombstone_ttl_s)
        log.info("kubernetes.job_failed_to_start", job_id=job_id, reason=problem.reason)
        try:
            await self._delete(job_name(job_id))
        except BackendUnavailable as exc:
            log.warning("kubernetes.delete_failed", job_id=job_id, error=str(exc))
        return final

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()


def _api_error(prefix: str, exc: ApiException) -> str:
    detail = exc.reason or ""
    body = exc.body.decode() if isinstance(exc.body, bytes) else exc.body
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            detail = json.loads(body).get("message") or detail
    return f"{prefix}: {exc.status} {detail}".strip()


def create_backend(platform: PlatformConfig, settings: Settings) -> KubernetesBackend:
    return KubernetesBackend(platform, settings)
