"""The Kubernetes backend itself: a synchronous facade over the event loop that follows the Jobs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import aiohttp
import structlog
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from cirasa.backends.base import BackendStatus, BackendUnavailable, DiscoveredJob, JobSpec, TrackedJob
from cirasa.backends.kubernetes.client import JobsApi
from cirasa.backends.kubernetes.informer import Informer
from cirasa.backends.kubernetes.manifest import PathMapper, build_job_manifest
from cirasa.backends.kubernetes.naming import ANN_USER, LABEL_MANAGED_BY, LABEL_PLATFORM, MANAGED_BY, job_name
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.kubernetes.status import dig, job_id_of, job_status, pod_unfinished, start_problem
from cirasa.common.events import JobState
from cirasa.common.settings import PlatformConfig, Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

POD_SETTLE_S = 5.0
"""How long a failed Job waits for its pod's final status (exit code, reason) to be watched."""


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
        self._runner = _LoopThread(f"k8s-{self.platform}")
        self._api = JobsApi(self.options, self.platform)
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
        return self._call(self._api.create(spec.job_id, manifest), self.options.request_timeout_s * 8)

    def cancel(self, job: TrackedJob) -> None:
        self._call(self._api.cancel(job.job_id), self.options.request_timeout_s * 3)

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, BackendStatus | None]:
        timeout = self.options.sync_timeout_s + self.options.request_timeout_s + 5
        return self._call(self._poll([j.job_id for j in jobs]), timeout)

    def discover(self) -> list[DiscoveredJob]:
        """Our Jobs on this platform (by label), with the job id and user their annotations carry."""
        return self._call(self._discover(), self.options.request_timeout_s * 3)

    def close(self) -> None:
        """Stop the watches and the loop thread (tests; services just exit)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BackendUnavailable, RuntimeError):
            self._runner.call(self._shutdown(), 10)
        self._runner.stop()

    @property
    def namespace(self) -> str | None:
        """Where the Jobs go: the configured namespace, else known once the API client has connected."""
        return self._api.namespace

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._closed:
            coro.close()
            raise BackendUnavailable(f"the kubernetes backend of {self.platform} is closed")
        return self._runner.call(coro, timeout)

    # on the loop --------------------------------------------------------------------------------

    async def _ensure_informers(self) -> tuple[Informer, Informer]:
        if self.jobs is None or self.pods is None:
            list_jobs, list_pods, ns = await self._api.list_functions()
            self.jobs = Informer("jobs", list_jobs, ns, self.selector, self.options, self._job_gone)
            self.pods = Informer("pods", list_pods, ns, self.selector, self.options, self._pod_gone)
            self._tasks += [asyncio.create_task(self.jobs.run()), asyncio.create_task(self.pods.run())]
        return self.jobs, self.pods

    def _pods_by_job(self) -> dict[str, list[dict[str, Any]]]:
        by_job: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in self._pod_ghosts.items()}
        assert self.pods is not None
        for pod in self.pods.objects.values():
            job_id = job_id_of(pod)
            if job_id is not None:
                by_job.setdefault(job_id, {})[pod["metadata"]["name"]] = pod
        return {k: list(v.values()) for k, v in by_job.items()}

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        """Keep a deleted pod while its Job exists: the TTL controller deletes pods before the Job."""
        job_id = job_id_of(pod)
        if job_id is not None and self.jobs is not None and job_name(job_id) in self.jobs.objects:
            self._pod_ghosts.setdefault(job_id, {})[pod["metadata"]["name"]] = pod

    def _job_gone(self, job: dict[str, Any]) -> None:
        """A Job was deleted: remember its final state (or that it was canceled)."""
        job_id = job_id_of(job)
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
            elif obj is not None and job_id_of(obj) == job_id:
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
                if obj is not None and job_id_of(obj) == job_id:
                    result[job_id] = await self._status(job_id, obj, pods_by_job.get(job_id, []))
                else:
                    result[job_id] = self._tombstones.get(job_id, (None, 0.0))[0]
        return result

    async def _status(self, job_id: str, job: dict[str, Any], pods: list[dict[str, Any]]) -> BackendStatus:
        status = job_status(job, pods)
        if status.state is JobState.FAILURE and pod_unfinished(pods):
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
            await self._api.delete(job_name(job_id))
        except BackendUnavailable as exc:
            log.warning("kubernetes.delete_failed", job_id=job_id, error=str(exc))
        return final

    async def _discover(self) -> list[DiscoveredJob]:
        jobs, _ = await self._ensure_informers()
        try:
            listed, _ = await jobs.list_now()
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendUnavailable(f"platform {self.platform}: cannot list Jobs: {exc!r}") from exc
        found: list[DiscoveredJob] = []
        for name, obj in listed.items():
            job_id = job_id_of(obj)
            user = dig(obj, "metadata", "annotations", ANN_USER)
            deadline = dig(obj, "spec", "activeDeadlineSeconds")
            if job_id is not None:
                found.append(
                    DiscoveredJob(
                        job_id=job_id,
                        backend_job_id=name,
                        user=user if isinstance(user, str) else None,
                        duration_s=float(deadline) if isinstance(deadline, int | float) else None,
                    )
                )
        return found

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._api.close()
