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

The modules: ``options`` (the platform options), ``naming`` (Job names, labels and annotations),
``manifest`` (the Job to create), ``status`` (a Job and its pods in our terms), ``client`` (the API
calls), ``informer`` (the LIST + WATCH caches) and ``backend`` (the Backend protocol over all of them).
"""

from cirasa.backends.kubernetes.backend import KubernetesBackend
from cirasa.backends.kubernetes.informer import Informer
from cirasa.backends.kubernetes.manifest import PathMapper, build_job_manifest
from cirasa.backends.kubernetes.naming import job_name, label_value
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.kubernetes.status import StartProblem, job_status, start_problem

__all__ = [
    "Informer",
    "KubernetesBackend",
    "KubernetesOptions",
    "PathMapper",
    "StartProblem",
    "build_job_manifest",
    "job_name",
    "job_status",
    "label_value",
    "start_problem",
]
