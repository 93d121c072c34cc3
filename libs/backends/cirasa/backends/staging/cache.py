"""A platform's content-addressed cache of staged resources, shared by every job on the host.

Layout under ``root``: ``blobs/sha256/<2 hex>/<digest>`` the content, read-only; ``keys/<key>`` the
digest a source (scheme, location, endpoint, checksum) was last staged as; ``locks/<key>.lock`` for
the one download of a key at a time across processes; ``tmp/`` transfers under way, on the same
filesystem so that a verified transfer becomes a blob by one rename.

A blob's mtime is its last use: set when it is stored and on every hit, and the least recently used
are evicted when the cache holds more than ``max_bytes``. Jobs get hard links to blobs (or copies),
so evicting a blob a job still links only takes it out of the cache; a job that has not linked it
yet when another process evicts it must stage it again (``link_into`` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import string
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cirasa.backends.staging.checksums import parse_checksum, verify
from cirasa.backends.staging.errors import StagingError
from cirasa.backends.staging.fetchers import fetch, label_of
from cirasa.backends.staging.locks import KeyLocks, file_lock
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Progress
from cirasa.common import metrics
from cirasa.common.events import DataSource

STALE_TMP_S = 6 * 3600  # a transfer file untouched this long was left by a process that died
HIT_HOST = "cache"  # CachedResource.host of a hit: the bytes came from the cache, not the network
_HEX = frozenset(string.hexdigits.lower())


@dataclass(frozen=True)
class CachedResource:
    path: Path  # the blob: link or copy it (link_into), never write it
    digest: str  # sha256 hex of the content
    size_bytes: int
    hit: bool  # True when no byte was fetched for this call
    seconds: float  # the call's duration, waits included
    host: str  # where the bytes came from; "cache" on a hit
    key: str  # the source's cache key (DataSource.key())


def _is_digest(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened or synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ContentCache:
    """``stage`` a DataSource: from the cache when it holds the content, else fetched once (however
    many jobs and processes ask at the same time), verified, stored and the cache evicted to size."""

    def __init__(self, root: Path, max_bytes: int, platform: str) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.platform = platform
        for sub in ("blobs/sha256", "keys", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._locks = KeyLocks()
        self._evicting = asyncio.Lock()  # one pass at a time, or two would count the same blobs
        self._remove_stale_tmp()

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest[:2] / digest

    async def stage(
        self, source: DataSource, policy: StagingPolicy, progress: Progress | None = None
    ) -> CachedResource:
        """The resource in the cache; raises StagingError (one line for the user) when it cannot be."""
        started = time.monotonic()
        try:
            item = await self._stage(source, policy, progress, started)
        except StagingError as exc:
            metrics.STAGING_FAILURES.labels(self.platform, exc.reason).inc()
            raise
        except OSError as exc:  # the cache itself: its directories, index or lock files
            error = StagingError(
                f"{label_of(source)}: the staging cache at {self.root} cannot be used: {exc.strerror or exc}"
            )
            metrics.STAGING_FAILURES.labels(self.platform, error.reason).inc()
            raise error from exc
        if item.hit:
            metrics.STAGING_CACHE_HITS.labels(self.platform).inc()
            metrics.STAGING_BYTES.labels(self.platform, "cache").inc(item.size_bytes)
            if progress is not None:
                progress(item.size_bytes, item.size_bytes)
        else:
            metrics.STAGING_CACHE_MISSES.labels(self.platform).inc()
            metrics.STAGING_BYTES.labels(self.platform, "network").inc(item.size_bytes)
            async with self._evicting:
                evicted, total = await asyncio.to_thread(self._evict, item.digest)
            metrics.STAGING_EVICTIONS.labels(self.platform).inc(evicted)
            metrics.STAGING_CACHE_BYTES.labels(self.platform).set(total)
        return item

    async def _stage(
        self, source: DataSource, policy: StagingPolicy, progress: Progress | None, started: float
    ) -> CachedResource:
        expected = parse_checksum(source.checksum, label_of(source))
        key = source.key()
        async with self._locks.hold(key):
            found = await asyncio.to_thread(self._lookup, key, expected, False)
            if found is None:
                async with file_lock(self.root / "locks" / f"{key}.lock"):
                    found = await asyncio.to_thread(self._lookup, key, expected, True)
                    if found is None:
                        return await self._download(source, policy, progress, key, expected, started)
        digest, size = found
        return CachedResource(
            self.blob_path(digest), digest, size, True, time.monotonic() - started, HIT_HOST, key
        )

    async def _download(
        self,
        source: DataSource,
        policy: StagingPolicy,
        progress: Progress | None,
        key: str,
        expected: tuple[str, str] | None,
        started: float,
    ) -> CachedResource:
        """Fetch into tmp/, verify, and make it the blob: a failure or a cancellation leaves neither."""
        label = label_of(source)
        if policy.max_resource_bytes > self.max_bytes:  # a resource must fit in the cache
            policy = policy.model_copy(update={"max_resource_bytes": self.max_bytes})
        tmp = self.root / "tmp" / uuid.uuid4().hex
        try:
            fetched = await fetch(source, tmp, policy, progress)
            verify(expected, fetched.digests, label, source.location)
            await asyncio.to_thread(self._commit, tmp, key, fetched.sha256)
        except OSError as exc:
            raise StagingError(f"{label}: cannot store it in the cache: {exc.strerror or exc}") from exc
        finally:
            await asyncio.to_thread(self._discard, tmp)
        return CachedResource(
            self.blob_path(fetched.sha256),
            fetched.sha256,
            fetched.size,
            False,
            time.monotonic() - started,
            fetched.host,
            key,
        )

    # --- blocking parts, run in worker threads -------------------------------------------------------

    def _lookup(self, key: str, expected: tuple[str, str] | None, prune: bool) -> tuple[str, int] | None:
        """(digest, size) of the blob this source is, touched as used; None when the cache lacks it.
        A sha256 checksum names the blob by itself; otherwise the key's index entry does. ``prune``
        (only under the key's file lock) removes an entry whose blob was evicted."""
        if expected is not None and expected[0] == "sha256":
            size = self._touch(expected[1])
            if size is not None:
                self._write_index(key, expected[1])
                return expected[1], size
        index = self.root / "keys" / key
        try:
            digest = index.read_text().strip()
        except FileNotFoundError:
            return None
        size = self._touch(digest) if _is_digest(digest) else None
        if size is None:
            if prune:
                index.unlink(missing_ok=True)
            return None
        return digest, size

    def _touch(self, digest: str) -> int | None:
        """Mark the blob as used now; its size, or None when there is no such blob. Times are set
        explicitly: the clock the filesystem stamps writes with is too coarse to order fast uses."""
        path = self.blob_path(digest)
        now = time.time_ns()
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:
            return None
        except PermissionError:  # a blob another user stored: still usable, only not marked
            pass
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def _write_index(self, key: str, digest: str) -> None:
        index = self.root / "keys" / key
        with contextlib.suppress(FileNotFoundError):
            if index.read_text().strip() == digest:
                return
        part = index.with_name(f".{key}.{uuid.uuid4().hex}")
        part.write_text(digest)
        os.replace(part, index)

    def _commit(self, tmp: Path, key: str, digest: str) -> None:
        """Make a verified transfer the blob ``digest``: synced, read-only, renamed into place."""
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        now = time.time_ns()
        os.utime(tmp, ns=(now, now))
        os.chmod(tmp, 0o444)
        blob = self.blob_path(digest)
        blob.parent.mkdir(exist_ok=True)
        if self._touch(digest) is None:  # the same content may be there already, under another key
            os.replace(tmp, blob)
            _fsync_dir(blob.parent)
        self._write_index(key, digest)

    @staticmethod
    def _discard(tmp: Path) -> None:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)

    def _evict(self, keep: str) -> tuple[int, int]:
        """Remove least recently used blobs (never ``keep``) until the cache fits in max_bytes, and
        their index entries; (blobs evicted, bytes the cache then holds)."""
        blobs: list[tuple[int, str, int, str]] = []
        with os.scandir(self.root / "blobs" / "sha256") as shards:
            for shard in shards:
                if not shard.is_dir():
                    continue
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        with contextlib.suppress(FileNotFoundError):
                            st = entry.stat()
                            blobs.append((st.st_mtime_ns, entry.name, st.st_size, entry.path))
        total = sum(size for _, _, size, _ in blobs)
        evicted: set[str] = set()
        for _, digest, size, path in sorted(blobs):
            if total <= self.max_bytes:
                break
            if digest == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
            evicted.add(digest)
        if evicted:
            self._drop_index(evicted)
        return len(evicted), total

    def _drop_index(self, digests: set[str]) -> None:
        with os.scandir(self.root / "keys") as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    if Path(entry.path).read_text().strip() in digests:
                        os.unlink(entry.path)

    def _remove_stale_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_S
        for folder in (self.root / "tmp", self.root / "keys"):
            with os.scandir(folder) as entries:
                for entry in entries:
                    if folder.name == "keys" and not entry.name.startswith("."):
                        continue
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)


def link_into(item: CachedResource, dest: Path, writable: bool) -> None:
    """Show a staged resource to a job at ``dest`` (its parents created, a file there replaced).
    Read-only: a hard link to the blob, or a read-only copy where no link can be made (another
    filesystem); writable: a copy of the job's own (0o644), so no job ever writes the shared blob."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        if writable:
            shutil.copyfile(item.path, part)
            os.chmod(part, 0o644)
        else:
            try:
                os.link(item.path, part)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                shutil.copyfile(item.path, part)
                os.chmod(part, 0o444)
        os.replace(part, dest)
    except OSError as exc:
        if not item.path.exists():
            raise StagingError(
                f"the staged resource {item.digest[:12]} left the cache before it was linked into "
                f"{dest}: stage it again"
            ) from exc
        raise StagingError(f"cannot put the staged resource into {dest}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
