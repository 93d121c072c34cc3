"""Where a fetcher's bytes go: counted against the size limit as they arrive, hashed, written to a
file in a worker thread (a cache on a slow shared filesystem must not stall the event loop), and
reported to a progress callback now and then."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import BinaryIO

from cirasa.backends.staging.errors import StagingError, TooLarge

Progress = Callable[[int, int | None], None]
"""progress(done_bytes, total_bytes or None when unknown)"""

FLUSH_BYTES = 1024 * 1024  # written (and hashed) in the worker thread by pieces of about this size
PROGRESS_EVERY_S = 0.25
PROGRESS_EVERY_BYTES = 1024 * 1024


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    raise AssertionError("unreachable")


class Sink:
    """Bytes of one resource on their way into ``fh``. ``origin`` (the URL they come from) and
    ``total`` (the size announced, if any) are set by the fetcher once it knows them."""

    def __init__(
        self,
        fh: BinaryIO,
        *,
        label: str,
        limit: int,
        progress: Progress | None = None,
        algorithms: tuple[str, ...] = ("sha256",),
    ) -> None:
        self._fh = fh
        self.label = label
        self.limit = limit
        self.origin = ""
        self.total: int | None = None
        self.size = 0
        self._hashes = {alg: hashlib.new(alg) for alg in {"sha256", *algorithms}}
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._progress = progress
        self._reported = (0, time.monotonic())  # bytes and time of the last report

    def refuse_announced(self, announced: int | None) -> None:
        """Refuse before reading a byte when the origin announces more than the limit."""
        if announced is not None and announced > self.limit:
            raise TooLarge(
                f"{self.label}: {self.origin} is {human_bytes(announced)}, more than the "
                f"{human_bytes(self.limit)} this platform stages"
            )
        self.total = announced

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:  # cut as soon as it passes, whatever was announced
            raise TooLarge(
                f"{self.label}: {self.origin} sent more than the {human_bytes(self.limit)} "
                "this platform stages"
            )
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= FLUSH_BYTES:
            await self._flush()
        self._maybe_report()

    async def close(self) -> None:
        """Write what is left and report the final size (the fetcher closes the file)."""
        await self._flush()
        if self._progress is not None:
            self._progress(self.size, self.total if self.total is not None else self.size)

    def digests(self) -> dict[str, str]:
        return {alg: h.hexdigest() for alg, h in self._hashes.items()}

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        await asyncio.to_thread(self._write_sync, data)

    def _write_sync(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)
        try:
            self._fh.write(data)
        except OSError as exc:
            raise StagingError(f"{self.label}: cannot write it to the cache: {exc.strerror or exc}") from exc

    def _maybe_report(self) -> None:
        if self._progress is None:
            return
        done, at = self._reported
        now = time.monotonic()
        if now - at >= PROGRESS_EVERY_S or self.size - done >= PROGRESS_EVERY_BYTES:
            self._reported = (self.size, now)
            self._progress(self.size, self.total)
