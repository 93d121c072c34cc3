"""The Kubernetes API as the backend uses it: a client connected on first use (which also settles the
namespace), and Jobs created, canceled and deleted with retries on transient errors. Everything here
runs on the backend's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from cirasa.backends.base import BackendUnavailable
from cirasa.backends.kubernetes.naming import ANN_CANCEL, job_name
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.kubernetes.status import dig, job_id_of

log = structlog.get_logger(__name__)

T = TypeVar("T")

ListFn = Callable[..., Awaitable[Any]]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


async def raw_json(call: Awaitable[Any]) -> dict[str, Any]:
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


class JobsApi:
    """Jobs of one platform in one namespace, through one API client."""

    def __init__(self, options: KubernetesOptions, platform: str) -> None:
        self.options = options
        self.platform = platform
        self.namespace: str | None = options.namespace
        self._api: k8s.ApiClient | None = None
        self._api_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[Any]] = []

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
                context_namespace = dig(loader.current_context, "context", "namespace")
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

    async def create(self, job_id: str, manifest: dict[str, Any]) -> str:
        api, ns = await self._batch()
        name = manifest["metadata"]["name"]
        body: Any = manifest  # the client sends a dict as it is: no model round trip
        for _ in range(2):
            try:
                await self._retrying(
                    "create a Job",
                    lambda: raw_json(
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
                    raise BackendUnavailable(api_error(f"Kubernetes refused Job {name}", exc)) from exc
            try:
                existing = await self._retrying(
                    "read a Job",
                    lambda: raw_json(
                        api.read_namespaced_job(
                            name, ns, _preload_content=False, _request_timeout=self.options.request_timeout_s
                        )
                    ),
                )
            except ApiException as exc:
                if exc.status == 404:
                    continue  # deleted between our create and our read: create again
                raise BackendUnavailable(api_error(f"cannot read Job {name}", exc)) from exc
            if job_id_of(existing) != job_id:
                raise BackendUnavailable(
                    f"Job {name} exists in {ns} but belongs to job {job_id_of(existing)}"
                )
            log.info("kubernetes.job_exists", job_id=job_id, job=name, namespace=ns)
            return str(name)
        raise BackendUnavailable(f"Job {name} keeps disappearing while it is being created")

    async def cancel(self, job_id: str) -> None:
        api, ns = await self._batch()
        name = job_name(job_id)
        patch = {"metadata": {"annotations": {ANN_CANCEL: datetime.now(UTC).isoformat()}}}
        try:
            await self._retrying(
                "mark a Job canceled",
                lambda: raw_json(
                    api.patch_namespaced_job(
                        name, ns, patch, _preload_content=False,
                        _request_timeout=self.options.request_timeout_s,
                    )
                ),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return
            raise BackendUnavailable(api_error(f"cannot cancel Job {name}", exc)) from exc
        await self.delete(name)
        log.info("kubernetes.job_canceled", job_id=job_id, job=name)

    async def delete(self, name: str) -> None:
        api, ns = await self._batch()
        options = k8s.V1DeleteOptions(propagation_policy="Background")
        try:
            await self._retrying(
                "delete a Job",
                lambda: raw_json(
                    api.delete_namespaced_job(
                        name, ns, body=options,
                        _preload_content=False, _request_timeout=self.options.request_timeout_s,
                    )
                ),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise BackendUnavailable(api_error(f"cannot delete Job {name}", exc)) from exc

    async def list_functions(self) -> tuple[ListFn, ListFn, str]:
        """The LIST calls of Jobs and of pods (which a WATCH streams too), and the namespace."""
        api, namespace = await self._client()
        return k8s.BatchV1Api(api).list_namespaced_job, k8s.CoreV1Api(api).list_namespaced_pod, namespace

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()


def api_error(prefix: str, exc: ApiException) -> str:
    detail = exc.reason or ""
    body = exc.body.decode() if isinstance(exc.body, bytes) else exc.body
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            detail = json.loads(body).get("message") or detail
    return f"{prefix}: {exc.status} {detail}".strip()
