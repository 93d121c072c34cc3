"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PUBLISHED = Counter(
    "cirasa_events_published_total", "Events published and confirmed by the broker", ["service", "event"]
)
EVENTS_CONSUMED = Counter(
    "cirasa_events_consumed_total",
    "Events taken from a queue, by outcome (ok, duplicate, dead_lettered, retried)",
    ["service", "event", "outcome"],
)
EVENT_HANDLING = Histogram(
    "cirasa_event_handling_seconds",
    "Time spent handling one event",
    ["service", "event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS = Counter(
    "cirasa_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
OFFERS = Counter(
    "cirasa_offers_total",
    "Offers by what became of them (made, no, accepted, rejected, expired, cancelled)",
    ["platform", "outcome"],
)
BACKEND_ERRORS = Counter(
    "cirasa_backend_errors_total", "Failed calls to a compute backend", ["platform", "operation"]
)
JOB_TRANSITIONS = Counter("cirasa_jobs_total", "Job state transitions seen by the monitor", ["state"])
JOBS_ACTIVE = Gauge("cirasa_jobs_active", "Jobs PENDING or RUNNING, per platform", ["platform", "state"])
QUEUE_DEPTH = Gauge("cirasa_queue_depth", "Messages waiting in a service's queue", ["service", "queue"])
OUTBOX_PENDING = Gauge(
    "cirasa_outbox_pending", "Events written but not yet confirmed by the broker", ["service"]
)
PLATFORM_RESERVED_CORES = Gauge(
    "cirasa_platform_reserved_cores", "Cores held by offers and running jobs", ["platform"]
)
PLATFORM_TOTAL_CORES = Gauge("cirasa_platform_total_cores", "Cores a platform offers", ["platform"])
START_DELAY = Histogram(
    "cirasa_start_delay_seconds",
    "How late a job started against the start its offer promised (actual minus offered)",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
SUBMIT_TO_START = Histogram(
    "cirasa_submit_to_start_seconds",
    "From the proposal to the job running",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

# data staging (ExecutionBroker data fetched into each platform's cache before its job starts)
STAGING_CACHE_HITS = Counter(
    "cirasa_staging_cache_hits_total", "Resources staged from the platform's cache", ["platform"]
)
STAGING_CACHE_MISSES = Counter(
    "cirasa_staging_cache_misses_total", "Resources fetched from their origin into the cache", ["platform"]
)
STAGING_BYTES = Counter(
    "cirasa_staging_bytes_total",
    "Bytes staged, by where they came from (network or cache)",
    ["platform", "origin"],
)
STAGING_EVICTIONS = Counter(
    "cirasa_staging_evictions_total", "Blobs evicted from the cache (least recently used)", ["platform"]
)
STAGING_CACHE_BYTES = Gauge("cirasa_staging_cache_bytes", "Bytes the staging cache holds", ["platform"])
STAGING_FAILURES = Counter(
    "cirasa_staging_failures_total",
    "Resources that could not be staged, by the kind of failure (the error's class)",
    ["platform", "reason"],
)
