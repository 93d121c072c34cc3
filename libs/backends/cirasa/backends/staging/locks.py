"""One download per resource: a lock per key inside the process, and a file lock for the other
processes on the host (or on any host sharing the cache, where the filesystem honours flock)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# flock not supported by the filesystem (NFS without a lock daemon, some FUSE filesystems)
NO_LOCKING = frozenset({errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL})


class KeyLocks:
    """asyncio locks by key, dropped when nobody holds or awaits them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@contextlib.asynccontextmanager
async def file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock on ``path``, waited for in a worker thread. flock belongs to the open file,
    so two opens conflict even within one process. Closing the file releases it; if the wait is
    cancelled, the file is closed once the thread returns, whether or not it got the lock.

    Where the filesystem has no flock, this goes on unlocked: two processes may then both fetch a
    resource, which only wastes a transfer (each verifies its own, and a blob is replaced atomically)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
    try:
        await asyncio.shield(waiting)
    except OSError as exc:
        if exc.errno not in NO_LOCKING:
            os.close(fd)
            raise
        log.warning("staging.unlocked", path=str(path), error=exc.strerror)
    except BaseException:

        def release(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved here: nobody else will
            os.close(fd)

        waiting.add_done_callback(release)
        raise
    try:
        yield
    finally:
        os.close(fd)
