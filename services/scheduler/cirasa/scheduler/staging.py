"""PREPARING: a job's data and executable fetched into its platform's cache and put where it sees them.

Each platform has one content-addressed cache (``cirasa.backends.staging``) that its jobs share. A
read-only volume is made of hard links to the cache's blobs under the job's control folder (which the
job cannot reach through its own directory, so it cannot write the shared blob); a read-write volume
is a copy, or an empty scratch directory, under ``<job dir>/volumes/`` and so part of the job's
products. Progress goes out as ``JobStaging`` events, best effort: a lost one only delays what a
client sees; the last one (``done``) tells the planner how fast each origin was and what the
platform's cache now holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cirasa.backends.base import Mount
from cirasa.backends.sandbox import CONTROL_DIR
from cirasa.backends.staging import CachedResource, ContentCache, StagingError, StagingPolicy, link_into
from cirasa.common.events import DataSource, JobStaging, JobSubmitted, StagedSource, VolumeMount
from cirasa.common.settings import Settings

log = structlog.get_logger()

GIB = 1024**3
PROGRESS_EVERY_S = 1.0
PARALLEL = 4  # resources fetched at once per job


class StagingFailed(Exception):
    """The job cannot start: one of its resources could not be staged (the message says which and why)."""


@dataclass
class Staged:
    mounts: tuple[Mount, ...] = ()
    executable: Path | None = None  # a notebook fetched by URL
    sources: list[StagedSource] = field(default_factory=list)


class Stager:
    def __init__(self, settings: Settings, publish: Callable[[JobStaging], Awaitable[None]]) -> None:
        self._settings = settings
        self._publish = publish
        self._caches: dict[str, ContentCache] = {}
        self.policy = StagingPolicy.model_validate(settings.staging.policy)

    def cache(self, platform: str) -> ContentCache:
        if platform not in self._caches:
            root = self._settings.staging.cache_dir or self._settings.data_dir / "cache"
            max_bytes = int(self._settings.staging.cache_max_gib * GIB)
            self._caches[platform] = ContentCache(Path(root) / platform, max_bytes, platform)
        return self._caches[platform]

    async def stage(self, ev: JobSubmitted, job_dir: Path) -> Staged:
        """Fetch what ``ev`` needs and lay out its volumes in ``job_dir``; StagingFailed if one fails."""
        if not ev.staging and not ev.volumes:
            return Staged()
        progress = _Progress(ev, self._publish)
        cache = self.cache(ev.platform)
        gate = asyncio.Semaphore(PARALLEL)

        async def one(source: DataSource) -> CachedResource:
            async with gate:
                return await cache.stage(source, self.policy, progress.callback(source.name))

        try:
            items = await asyncio.gather(*(one(s) for s in ev.staging))
        except StagingError as exc:
            await progress.send(done=True, error=str(exc))
            raise StagingFailed(str(exc)) from exc
        by_name = dict(zip((s.name for s in ev.staging), items, strict=True))
        staged = Staged(sources=[_staged_source(s, by_name[s.name]) for s in ev.staging])
        mounts = [_lay_out(volume, by_name, job_dir) for volume in ev.volumes]
        staged.mounts = tuple(mounts)
        for source in ev.staging:
            if source.role == "executable":
                staged.executable = job_dir / CONTROL_DIR / "staged" / source.name
                _link_once(by_name[source.name], staged.executable, writable=False)
        await progress.send(done=True, sources=staged.sources)
        return staged


def _staged_source(source: DataSource, item: CachedResource) -> StagedSource:
    return StagedSource(
        name=source.name,
        source=source.origin(),
        key=item.key,
        size_bytes=item.size_bytes,
        seconds=round(item.seconds, 3),
        cached=item.hit,
    )


def _link_once(item: CachedResource, dest: Path, writable: bool) -> None:
    """Idempotent: a job staged again (dispatched at its start after staging ahead) keeps its links."""
    if not dest.exists():
        link_into(item, dest, writable=writable)


def _lay_out(volume: VolumeMount, items: dict[str, CachedResource], job_dir: Path) -> Mount:
    writable = volume.mode == "READWRITE"
    base = (job_dir / "volumes" if writable else job_dir / CONTROL_DIR / "volumes") / volume.name
    base.mkdir(parents=True, exist_ok=True)
    for name in volume.resources:
        _link_once(items[name], base / name, writable)
    if volume.cardinality == "SINGLE":
        return Mount(base / volume.resources[0], volume.path, read_only=not writable)
    return Mount(base, volume.path, read_only=not writable)


class _Progress:
    """Bytes done across a job's resources, sent at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, ev: JobSubmitted, publish: Callable[[JobStaging], Awaitable[None]]) -> None:
        self._ev, self._publish = ev, publish
        self._done: dict[str, int] = {}
        self._total: dict[str, int | None] = {s.name: s.size_bytes for s in ev.staging}
        self._finished: set[str] = set()
        self._sent_at = 0.0
        self._pending: asyncio.Task[None] | None = None

    def callback(self, name: str) -> Callable[[int, int | None], None]:
        def report(done: int, total: int | None) -> None:
            self._done[name] = done
            if total is not None:
                self._total[name] = total
            if total is not None and done >= total:
                self._finished.add(name)
            now = time.monotonic()
            if now - self._sent_at >= PROGRESS_EVERY_S and (self._pending is None or self._pending.done()):
                self._sent_at = now
                self._pending = asyncio.get_running_loop().create_task(self.send())

        return report

    async def send(
        self, done: bool = False, error: str | None = None, sources: list[StagedSource] | None = None
    ) -> None:
        total: int | None
        if sources:  # the end: what each resource turned out to be
            done_bytes = total = sum(s.size_bytes for s in sources)
            finished: int = len(sources)
        else:
            totals = list(self._total.values())
            done_bytes = sum(self._done.values())
            total = None if None in totals else sum(t or 0 for t in totals)
            finished = len(self._finished)
        event = JobStaging(
            producer="scheduler",
            correlation_id=self._ev.correlation_id,
            causation_id=self._ev.event_id,
            user=self._ev.user,
            job_id=self._ev.job_id,
            platform=self._ev.platform,
            done_bytes=done_bytes,
            total_bytes=total,
            done_resources=finished,
            total_resources=len(self._ev.staging),
            done=done,
            error=error,
            sources=sources or [],
        )
        try:
            await self._publish(event)
        except (ConnectionError, OSError) as exc:  # best effort: the job goes on without it
            log.info("staging.progress_not_sent", job_id=self._ev.job_id, error=repr(exc))
