"""A small Kubernetes API server for tests: batch/v1 Jobs and core/v1 pods, with watches.

It speaks the real JSON (objects, lists, ``Status`` errors, watch events one per line) and keeps one
global resourceVersion with an event history, so watches resume from a resourceVersion and answer
410 Gone (``{"type": "ERROR", "object": {"kind": "Status", "code": 410, ...}}``) once the history
before it was compacted away. A created Job gets one pod, as the Job controller would give it; test
hooks then move the Job along (running, succeeded, failed with pod reasons and exit codes, deadline
exceeded, evicted, image pull back-off) and can drop or hold watch connections.

Created Jobs are validated strictly against the Kubernetes schemas (kubernetes-validate), and a bad
one is refused with 422 like a real server would.

The server runs on its own event loop in a thread; the hooks are synchronous and thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes_validate
from aiohttp import web

T = TypeVar("T")

K8S_VERSION = "1.31.0"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_JOBS = r"/apis/batch/v1/namespaces/{ns}/jobs"
_PODS = r"/api/v1/namespaces/{ns}/pods"
_BODY: web.RequestKey[Any] = web.RequestKey("json", object)  # the parsed JSON body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _flag(value: str | None) -> bool:
    """A boolean query parameter, read as the API server does (Go's strconv.ParseBool)."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also what a strategic merge patch of plain maps does)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


@dataclass(eq=False)
class _Watcher:
    kind: str
    namespace: str
    selector: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


class FakeKubeApi:
    """See the module docstring. ``url`` and ``token`` are what a kubeconfig needs."""

    def __init__(self, token: str = "test-token", validate: bool = True) -> None:
        self.token = token
        self.validate = validate
        self.url = ""
        self.requests: list[Request] = []
        self.gone_sent = 0
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name) -> object
        self._rv = 100
        self._history: list[tuple[int, str, dict[str, Any]]] = []  # (rv, event type, object)
        self._floor = self._rv  # watches from a resourceVersion below this get 410 Gone
        self._watchers: set[_Watcher] = set()
        self._gate: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kube-api", daemon=True)
        self._runner: web.AppRunner | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> FakeKubeApi:
        self._thread.start()
        self.url = self._run(self._start())
        return self

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _start(self) -> str:
        self._gate = asyncio.Event()
        self._gate.set()
        app = web.Application(middlewares=[self._auth])
        app.router.add_post(_JOBS, self._create_job)
        app.router.add_get(_JOBS, self._list_jobs)
        app.router.add_get(_JOBS + "/{name}", self._get_job)
        app.router.add_patch(_JOBS + "/{name}", self._patch_job)
        app.router.add_delete(_JOBS + "/{name}", self._delete_job)
        app.router.add_get(_PODS, self._list_pods)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        for w in list(self._watchers):
            w.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _do(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        result: T = self._run(call())
        return result

    # -- HTTP ----------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        request[_BODY] = body
        self.requests.append(Request(request.method, request.path, dict(request.query), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _create_job(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        body = request[_BODY]
        name = (body or {}).get("metadata", {}).get("name", "")
        if not isinstance(body, dict) or body.get("kind") != "Job" or body.get("apiVersion") != "batch/v1":
            return web.json_response(status_body(400, "BadRequest", "not a batch/v1 Job"), status=400)
        if not _DNS_SUBDOMAIN.match(name):
            message = f'Job.batch "{name}" is invalid: metadata.name: Invalid value'
            return web.json_response(status_body(422, "Invalid", message), status=422)
        if self.validate:
            try:
                kubernetes_validate.validate(body, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                message = f'Job.batch "{name}" is invalid: {exc.message}'
                return web.json_response(status_body(422, "Invalid", message, name=name), status=422)
        if ("Job", ns, name) in self._objects:
            message = f'jobs.batch "{name}" already exists'
            details = {"name": name, "group": "batch", "kind": "jobs"}
            return web.json_response(status_body(409, "AlreadyExists", message, **details), status=409)
        job = self._admit_job(ns, body)
        return web.json_response(job, status=201)

    async def _get_job(self, request: web.Request) -> web.StreamResponse:
        job = self._objects.get(("Job", request.match_info["ns"], request.match_info["name"]))
        if job is None:
            return self._not_found(request.match_info["name"])
        return web.json_response(job)

    async def _patch_job(self, request: web.Request) -> web.StreamResponse:
        key = ("Job", request.match_info["ns"], request.match_info["name"])
        if key not in self._objects:
            return self._not_found(key[2])
        ctype = request.content_type
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return web.json_response(status_body(415, "UnsupportedMediaType", ctype), status=415)
        job = _merge_patch(self._objects[key], request[_BODY])
        self._put("MODIFIED", job)
        return web.json_response(job)

    async def _delete_job(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        job = self._objects.get(("Job", ns, name))
        if job is None:
            return self._not_found(name)
        policy = (request[_BODY] or {}).get("propagationPolicy") or request.query.get("propagationPolicy")
        self._remove_job(ns, name, policy or "Background")
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]},
            }
        )

    async def _list_jobs(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "Job")

    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "Pod")

    async def _list(self, request: web.Request, kind: str) -> web.StreamResponse:
        ns = request.match_info["ns"]
        selector = request.query.get("labelSelector", "")
        if _flag(request.query.get("watch")):
            return await self._watch(request, kind, ns, selector)
        items = [copy.deepcopy(o) for o in self._matching(kind, ns, selector)]
        list_kind, api_version = ("JobList", "batch/v1") if kind == "Job" else ("PodList", "v1")
        return web.json_response(
            {
                "kind": list_kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, kind: str, ns: str, selector: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        # the client may go away, or the server stop, at any point of the stream
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            await self._stream(request, response, kind, ns, selector)
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, kind: str, ns: str, selector: str
    ) -> None:
        assert self._gate is not None
        await self._gate.wait()
        await response.prepare(request)
        since = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        bookmarks = _flag(request.query.get("allowWatchBookmarks"))

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since not in ("", "0") and int(since) < self._floor:
            self.gone_sent += 1
            message = f"too old resource version: {since} ({self._floor})"
            await send({"type": "ERROR", "object": status_body(410, "Expired", message)})
            return
        watcher = _Watcher(kind, ns, selector)
        # backlog and registration with no await in between: nothing is missed or sent twice
        if since in ("", "0"):
            backlog = [{"type": "ADDED", "object": o} for o in self._matching(kind, ns, selector)]
        else:
            backlog = [
                {"type": t, "object": o}
                for rv, t, o in self._history
                if rv > int(since) and self._wants(watcher, o)
            ]
        self._watchers.add(watcher)
        try:
            for old in backlog:
                await send(copy.deepcopy(old))
            deadline = self._loop.time() + timeout
            while True:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    if bookmarks:
                        meta = {"resourceVersion": str(self._rv)}
                        await send({"type": "BOOKMARK", "object": {"kind": kind, "metadata": meta}})
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    continue
                if event is None:
                    break
                await send(event)
        finally:
            self._watchers.discard(watcher)

    def _not_found(self, name: str) -> web.StreamResponse:
        details = {"name": name, "group": "batch", "kind": "jobs"}
        body = status_body(404, "NotFound", f'jobs.batch "{name}" not found', **details)
        return web.json_response(body, status=404)

    # -- state (only ever touched on the server's loop) ----------------------------------------

    def _matching(self, kind: str, ns: str, selector: str) -> list[dict[str, Any]]:
        return [
            o
            for (k, n, _), o in sorted(self._objects.items())
            if k == kind and n == ns and _selector_matches(selector, o["metadata"].get("labels") or {})
        ]

    @staticmethod
    def _wants(watcher: _Watcher, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        return (
            obj["kind"] == watcher.kind
            and meta.get("namespace") == watcher.namespace
            and _selector_matches(watcher.selector, meta.get("labels") or {})
        )

    def _put(self, event_type: str, obj: dict[str, Any]) -> None:
        """Store (or forget, for DELETED) an object, giving it the next resourceVersion; tell watchers."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event_type == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        snapshot = copy.deepcopy(obj)
        self._history.append((self._rv, event_type, snapshot))
        for watcher in list(self._watchers):
            if self._wants(watcher, snapshot):
                watcher.queue.put_nowait({"type": event_type, "object": copy.deepcopy(snapshot)})

    def _admit_job(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        """Default the Job as the API server does, then let the 'Job controller' create its pod."""
        job = copy.deepcopy(body)
        uid = str(uuid.uuid4())
        name = job["metadata"]["name"]
        meta = job["metadata"]
        meta.update({"namespace": ns, "uid": uid, "creationTimestamp": _now(), "generation": 1})
        spec = job["spec"]
        controller_labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(controller_labels)
        job["status"] = {}
        self._put("ADDED", job)

        template = spec["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{secrets.token_hex(3)[:5]}",
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "labels": dict(template["metadata"].get("labels") or {}),
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Pending",
                "qosClass": "Guaranteed",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                    for c in template["spec"]["containers"]
                ],
            },
        }
        self._put("ADDED", pod)
        job = copy.deepcopy(job)
        job["status"] = {"active": 1, "ready": 0, "startTime": _now(), "uncountedTerminatedPods": {}}
        self._put("MODIFIED", job)
        return job

    def _remove_job(self, ns: str, name: str, policy: str) -> None:
        job = self._objects[("Job", ns, name)]
        pods = [p for p in self._pods_of(ns, name)]
        if policy == "Foreground":  # dependents first, as the TTL controller asks for
            for pod in pods:
                self._put("DELETED", copy.deepcopy(pod))
            self._put("DELETED", copy.deepcopy(job))
        else:
            self._put("DELETED", copy.deepcopy(job))
            if policy == "Background":  # the garbage collector follows
                for pod in pods:
                    self._put("DELETED", copy.deepcopy(pod))

    def _pods_of(self, ns: str, job: str) -> list[dict[str, Any]]:
        return [
            p
            for (k, n, _), p in sorted(self._objects.items())
            if k == "Pod" and n == ns and p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job
        ]

    def _job_and_pod(self, ns: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        job = copy.deepcopy(self._objects[("Job", ns, name)])
        pod = copy.deepcopy(self._pods_of(ns, name)[-1])
        return job, pod

    def _finish(
        self,
        ns: str,
        name: str,
        *,
        succeeded: bool,
        exit_code: int,
        reason: str,
        message: str = "",
        pod_reason: str | None = None,
        pod_message: str = "",
        job_reason: str = "BackoffLimitExceeded",
    ) -> None:
        job, pod = self._job_and_pod(ns, name)
        cs = pod["status"]["containerStatuses"][0]
        started = (cs["state"].get("running") or {}).get("startedAt") or _now()
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": _now()}
        if message:
            terminated["message"] = message
        cs.update({"ready": False, "started": False, "state": {"terminated": terminated}})
        pod["status"]["phase"] = "Succeeded" if succeeded else "Failed"
        if pod_reason:
            pod["status"].update({"reason": pod_reason, "message": pod_message})
        self._put("MODIFIED", pod)
        now = _now()
        if succeeded:
            job["status"].update({"active": 0, "ready": 0, "succeeded": 1, "completionTime": now})
            conds = [("SuccessCriteriaMet", "CompletionsReached", ""), ("Complete", "CompletionsReached", "")]
        else:
            job["status"].update({"active": 0, "ready": 0, "failed": 1})
            text = "Job has reached the specified backoff limit"
            conds = [("FailureTarget", job_reason, text), ("Failed", job_reason, text)]
        job["status"]["conditions"] = [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "message": m,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
            for t, r, m in conds
        ]
        self._put("MODIFIED", job)

    # -- test hooks (synchronous, from any thread) ---------------------------------------------

    def job(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._do(lambda: copy.deepcopy(self._objects.get(("Job", ns, name))))

    def jobs(self, ns: str) -> list[dict[str, Any]]:
        return self._do(lambda: copy.deepcopy(self._matching("Job", ns, "")))

    def pods(self, ns: str, job: str) -> list[dict[str, Any]]:
        return self._do(lambda: copy.deepcopy(self._pods_of(ns, job)))

    def run(self, ns: str, name: str) -> None:
        """The pod's container started."""

        def go() -> None:
            job, pod = self._job_and_pod(ns, name)
            cs = pod["status"]["containerStatuses"][0]
            cs.update({"ready": True, "started": True, "state": {"running": {"startedAt": _now()}}})
            pod["status"].update({"phase": "Running", "startTime": _now(), "podIP": "10.0.0.7"})
            self._put("MODIFIED", pod)
            job["status"]["ready"] = 1
            self._put("MODIFIED", job)

        self._do(go)

    def succeed(self, ns: str, name: str) -> None:
        self._do(lambda: self._finish(ns, name, succeeded=True, exit_code=0, reason="Completed"))

    def fail(self, ns: str, name: str, exit_code: int = 1, reason: str = "Error", message: str = "") -> None:
        """The container exited non-zero (``reason`` OOMKilled for the OOM killer); the Job failed."""
        self._do(
            lambda: self._finish(
                ns, name, succeeded=False, exit_code=exit_code, reason=reason, message=message
            )
        )

    def evict(self, ns: str, name: str, message: str = "The node was low on resource: memory.") -> None:
        self._do(
            lambda: self._finish(
                ns,
                name,
                succeeded=False,
                exit_code=137,
                reason="ContainerStatusUnknown",
                pod_reason="Evicted",
                pod_message=message,
            )
        )

    def exceed_deadline(self, ns: str, name: str) -> None:
        """activeDeadlineSeconds passed: the Job fails with DeadlineExceeded and its pod is deleted."""

        def go() -> None:
            job, pod = self._job_and_pod(ns, name)
            now = _now()
            job["status"].update({"active": 0, "ready": 0, "failed": 1})
            text = "Job was active longer than specified deadline"
            job["status"]["conditions"] = [
                {"type": t, "status": "True", "reason": "DeadlineExceeded", "message": text,
                 "lastProbeTime": now, "lastTransitionTime": now}
                for t in ("FailureTarget", "Failed")
            ]  # fmt: skip
            self._put("MODIFIED", job)
            self._put("DELETED", pod)

        self._do(go)

    def waiting(self, ns: str, name: str, reason: str, message: str = "") -> None:
        """The container waits: ``ImagePullBackOff``, ``ErrImagePull``, ``CreateContainerConfigError``..."""

        def go() -> None:
            _, pod = self._job_and_pod(ns, name)
            cs = pod["status"]["containerStatuses"][0]
            text = message or f'Back-off pulling image "{cs["image"]}"'
            cs["state"] = {"waiting": {"reason": reason, "message": text}}
            self._put("MODIFIED", pod)

        self._do(go)

    def unschedulable(self, ns: str, name: str, message: str) -> None:
        def go() -> None:
            _, pod = self._job_and_pod(ns, name)
            pod["status"]["conditions"] = [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            ]
            pod["status"]["containerStatuses"] = []
            self._put("MODIFIED", pod)

        self._do(go)

    def delete_job(self, ns: str, name: str, policy: str = "Background") -> None:
        """Someone else deletes the Job (``Foreground`` is what the TTL-after-finished controller does)."""
        self._do(lambda: self._remove_job(ns, name, policy))

    def close_watches(self) -> None:
        """Drop every open watch connection; clients must resume."""

        def go() -> None:
            for w in list(self._watchers):
                w.queue.put_nowait(None)

        self._do(go)

    def hold_watches(self) -> None:
        """Drop open watches and keep new watch requests waiting until :meth:`release_watches`."""

        def go() -> None:
            assert self._gate is not None
            self._gate.clear()
            for w in list(self._watchers):
                w.queue.put_nowait(None)

        self._do(go)

    def release_watches(self) -> None:
        def go() -> None:
            assert self._gate is not None
            self._gate.set()

        self._do(go)

    def compact(self) -> None:
        """Forget the event history (as etcd compaction does): older resourceVersions get 410 Gone."""

        def go() -> None:
            self._history.clear()
            self._floor = self._rv + 1

        self._do(go)

    def watch_count(self) -> int:
        return self._do(lambda: len(self._watchers))

    def calls(self, method: str, path_part: str = "", **query: str) -> list[Request]:
        return [
            r
            for r in list(self.requests)
            if r.method == method
            and path_part in r.path
            and all(r.query.get(k) == v for k, v in query.items())
        ]
