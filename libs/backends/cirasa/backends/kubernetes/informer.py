"""Jobs or pods of one namespace and label selector, cached by a LIST followed by a WATCH."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import watch as k8s_watch
from kubernetes_asyncio.client.exceptions import ApiException

from cirasa.backends.kubernetes.client import ListFn, raw_json
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.kubernetes.status import dig

log = structlog.get_logger(__name__)


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
        body = await raw_json(
            self._list_fn(
                self._namespace,
                label_selector=self._selector,
                _preload_content=False,
                _request_timeout=self._opts.request_timeout_s,
            )
        )
        items = {item["metadata"]["name"]: item for item in body.get("items") or []}
        return items, str(dig(body, "metadata", "resourceVersion") or "")

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
        rv = dig(obj, "metadata", "resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.objects[obj["metadata"]["name"]] = obj
        elif kind == "DELETED":
            self.objects.pop(obj["metadata"]["name"], None)
            self._on_delete(obj)
        if rv:
            self.resource_version = str(rv)
