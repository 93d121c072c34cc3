"""Jobs rediscovered on the backends, so a monitor that lost its records still ends them.

A backend that can list our jobs (``Discovering``: the local backend by the ``submitted`` markers
under the jobs root, Slurm by job name, Kubernetes by label) is asked now and then; every job found
that the monitor has no document for is adopted as dispatched and followed by the normal polling
to its final state. Its ``seq`` starts at the adoption time in seconds, above any number an earlier
monitor could have given it (a handful per job), so consumers apply what it reports next.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

from pymongo.errors import DuplicateKeyError
from structlog.typing import FilteringBoundLogger

from cirasa.backends.base import Backend, DiscoveredJob, Discovering
from cirasa.common.events import utcnow
from cirasa.common.paths import job_dir_for
from cirasa.common.settings import PlatformConfig
from cirasa.common.store.documents import Documents
from cirasa.monitor.documents import MonitoredJob

DISCOVER_INTERVAL_S = 60.0
_ESCAPE = re.compile(r"\+([0-9A-F]{2})")


def user_of_dir(name: str) -> str | None:
    """The user whose ``safe_user`` directory name is ``name``; None for a hashed (long) name."""
    if "~" in name:
        return None
    raw = _ESCAPE.sub(lambda m: f"\\x{m.group(1)}", name)
    try:
        return raw.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


class Discovery:
    def __init__(
        self,
        jobs: Documents[MonitoredJob],
        platforms: list[PlatformConfig],
        backend_of: Callable[[str], Backend],
        log: FilteringBoundLogger,
    ) -> None:
        self._jobs = jobs
        self._platforms = platforms
        self._backend_of = backend_of
        self._log = log

    async def run(self) -> int:
        """Adopt every job the backends know and we do not; returns how many."""
        adopted = 0
        for platform in self._platforms:
            try:
                backend = self._backend_of(platform.name)
                if not isinstance(backend, Discovering):
                    continue
                found = await asyncio.to_thread(backend.discover)
            except Exception as exc:  # one platform down must not stop the others
                self._log.warning("backend.discover_failed", platform=platform.name, error=repr(exc))
                continue
            ids = [job.job_id for job in found]
            known = {d["_id"] async for d in self._jobs.raw.find({"_id": {"$in": ids}}, {"_id": 1})}
            for job in found:
                if job.job_id not in known:
                    adopted += await self._adopt(platform, job)
                    known.add(job.job_id)
        return adopted

    async def _adopt(self, platform: PlatformConfig, job: DiscoveredJob) -> int:
        user = job.user or (user_of_dir(job.job_dir.split("/")[0]) if job.job_dir else None)
        if user is None:
            self._log.warning("job.discovered_without_user", job_id=job.job_id, platform=platform.name)
            return 0
        now = utcnow()
        doc: dict[str, Any] = {
            "_id": job.job_id,
            **MonitoredJob.on_insert(),
            "seq": int(now.timestamp()),
            "dispatched": True,
            "user": user,
            "platform": platform.name,
            "backend": platform.backend,
            "backend_job_id": job.backend_job_id,
            "job_dir": job.job_dir or str(job_dir_for(user, job.job_id)),
            "duration_s": job.duration_s or float(platform.max_duration_s),
            "dispatched_at": now,
        }
        with contextlib.suppress(DuplicateKeyError):  # its own events got here first
            await self._jobs.raw.insert_one(doc)
            self._log.warning("job.discovered", job_id=job.job_id, platform=platform.name)
            return 1
        return 0
