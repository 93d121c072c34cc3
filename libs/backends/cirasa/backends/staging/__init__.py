"""Data staged before a job starts (ExecutionBroker data resources): fetched over http(s), from S3 or
through IVOA DataLink into a platform's content-addressed cache, under the platform's policy, and
linked into the job's directory.

    cache = ContentCache(root=Path(...), max_bytes=..., platform="local")
    item = await cache.stage(source, policy, progress=lambda done, total: ...)
    link_into(item, dest_path, writable=False)
"""

from cirasa.backends.staging.cache import CachedResource, ContentCache, link_into
from cirasa.backends.staging.errors import (
    ChecksumMismatch,
    FetchFailed,
    StagingError,
    StagingRefused,
    TooLarge,
)
from cirasa.backends.staging.fetchers import Fetched, fetch
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Progress

__all__ = [
    "CachedResource",
    "ChecksumMismatch",
    "ContentCache",
    "FetchFailed",
    "Fetched",
    "Progress",
    "StagingError",
    "StagingPolicy",
    "StagingRefused",
    "TooLarge",
    "fetch",
    "link_into",
]
