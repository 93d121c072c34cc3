"""What a backend reports busy beyond our own jobs (other users of a Slurm cluster) is booked as one
``external:<platform>`` booking, so offers there start when the cluster really has room."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from structlog.typing import FilteringBoundLogger

from cirasa.backends.base import BackendUnavailable
from cirasa.backends.factory import make_backend
from cirasa.common.events import utcnow
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.planner.calendar import Booking
from cirasa.planner.capacity import CapacityBook

EXTERNAL_REFRESH = timedelta(seconds=30)  # how often a backend's own load is read
SHARED_BACKENDS = ("slurm",)  # the backends whose load others share and that can tell it


class BackendLoad:
    def __init__(self, settings: Settings, capacity: CapacityBook, log: FilteringBoundLogger) -> None:
        self._settings = settings
        self._capacity = capacity
        self._log = log
        self._readers: dict[str, Any] = {}

    async def learn(self) -> None:
        now = utcnow()
        for platform in self._settings.platforms:
            if platform.backend in SHARED_BACKENDS:
                await self._learn_on(platform, now)

    async def _learn_on(self, platform: PlatformConfig, now: datetime) -> None:
        try:
            if platform.name not in self._readers:
                self._readers[platform.name] = make_backend(platform, self._settings)
            read = self._readers[platform.name].capacity
        except (BackendUnavailable, AttributeError):
            return
        try:
            cap = await asyncio.to_thread(read)
        except Exception as exc:  # the cluster is unreachable: keep the last figure until it expires
            self._log.warning("backend.capacity_failed", platform=platform.name, error=repr(exc))
            return
        state = await self._capacity.state(platform.name)
        ours = [b for b in state.bookings if b.kind == "job" and b.job_id and b.start <= now < b.end]
        busy_c = max(0, cap.total_cores - cap.free_cores - sum(b.cores for b in ours))
        busy_m = max(0, cap.total_memory_mb - cap.free_memory_mb - sum(b.memory_mib for b in ours))
        external = Booking(
            f"external:{platform.name}", busy_c, busy_m, now, now + 2 * EXTERNAL_REFRESH, "job", None, None
        )
        await self._capacity.set_external(platform.name, external)
