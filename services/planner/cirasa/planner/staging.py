"""How long a task's data takes to stage on a platform, so that its offers start after it.

What a platform's cache already holds costs nothing; anything else costs its size (declared, or as
staged before, or an assumed size) over the bandwidth measured from its origin (learnt, as the start
delay is, from the ``JobStaging`` events that end each staging; assumed until measured), plus a set-up
time per resource. The estimate is per platform, since each platform has its own cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import Field

from cirasa.common.events import DataSource, JobStaging, StagedSource, TaskProposed, as_utc
from cirasa.common.settings import StagingSettings
from cirasa.common.store import Collection
from cirasa.common.store.documents import Documents, StoredDocument

BANDWIDTH_WEIGHT = 0.3  # of the newest measurement in an origin's moving average
MIN_MEASURED_BYTES = 256 * 1024  # smaller transfers say more about latency than bandwidth
CACHE_S = 5.0  # an origin's bandwidth read from the store is used this long before reading it again
HELD_FOR = timedelta(days=1)  # a resource staged longer ago may have been evicted: not counted as held
MB = 1_000_000


class StagingStat(StoredDocument):
    """``bw:<origin>``: measured bandwidth; ``cached:<platform>:<key>``: a resource a platform holds."""

    id: str = Field(alias="_id")
    bytes_per_s: float | None = None
    samples: int = 0
    size_bytes: int | None = None
    seen_at: datetime | None = None


@dataclass(frozen=True)
class StagingEstimate:
    seconds: float
    to_fetch_bytes: int
    cached: int  # resources the platform's cache holds
    fetched: int  # resources to fetch

    @property
    def delay(self) -> timedelta:
        return timedelta(seconds=round(self.seconds, 1))

    def describe(self) -> str:
        """E.g. "staging first: 1 of 2 resources cached here, 40.0 MB to fetch, about 5 s"."""
        total = self.cached + self.fetched
        if not total:
            return ""
        parts = [f"{self.cached} of {total} resources cached here"] if self.cached else []
        if self.fetched:
            parts.append(f"{self.to_fetch_bytes / MB:.1f} MB to fetch, about {self.seconds:.0f} s")
        return "staging first: " + ", ".join(parts or ["all cached here"])


class StagingEstimates:
    def __init__(self, stats: Collection, settings: StagingSettings) -> None:
        self._stats = Documents(stats, StagingStat)
        self._settings = settings
        self._bandwidth: dict[str, tuple[float, float]] = {}  # origin -> (read at, bytes/s)

    async def learn(self, ev: JobStaging) -> None:
        """Fold a finished staging into the bandwidth of each origin and what the platform holds."""
        if not ev.done or ev.error:
            return
        now = datetime.now(UTC)
        for src in ev.sources:
            await self._stats.raw.update_one(
                {"_id": f"cached:{ev.platform}:{src.key}"},
                {"$set": {"size_bytes": src.size_bytes, "seen_at": now}},
                upsert=True,
            )
            if not src.cached:
                await self._learn_bandwidth(src)

    async def _learn_bandwidth(self, src: StagedSource) -> None:
        if src.size_bytes < MIN_MEASURED_BYTES or src.seconds <= 0:
            return
        measured = src.size_bytes / src.seconds
        doc = await self._stats.get(f"bw:{src.source}")
        old = doc.bytes_per_s if doc and doc.bytes_per_s else measured
        await self._stats.raw.update_one(
            {"_id": f"bw:{src.source}"},
            {
                "$set": {"bytes_per_s": (1 - BANDWIDTH_WEIGHT) * old + BANDWIDTH_WEIGHT * measured},
                "$inc": {"samples": 1},
            },
            upsert=True,
        )
        self._bandwidth.pop(src.source, None)

    async def estimate(self, task: TaskProposed, platform: str) -> StagingEstimate:
        seconds, to_fetch, cached, fetched = 0.0, 0, 0, 0
        for source in task.staging:
            held = await self._stats.get(f"cached:{platform}:{source.key()}")
            if held is not None and held.seen_at and as_utc(held.seen_at) > datetime.now(UTC) - HELD_FOR:
                cached += 1
                continue
            size = self._size(source)
            seconds += self._settings.setup_s + size / await self._bandwidth_of(source.origin())
            to_fetch += size
            fetched += 1
        return StagingEstimate(seconds, to_fetch, cached, fetched)

    def _size(self, source: DataSource) -> int:
        if source.size_bytes is not None:
            return source.size_bytes
        return int(self._settings.assumed_size_mb * MB)

    async def _bandwidth_of(self, origin: str) -> float:
        known = self._bandwidth.get(origin)
        if known is not None and time.monotonic() - known[0] < CACHE_S:
            return known[1]
        doc = await self._stats.get(f"bw:{origin}")
        rate = doc.bytes_per_s if doc and doc.bytes_per_s else self._settings.assumed_bandwidth_mbps * MB
        self._bandwidth[origin] = (time.monotonic(), rate)
        return rate
