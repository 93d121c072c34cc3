"""``cirasa_jobs_active``: the jobs PENDING or RUNNING per platform, as the monitor last counted them.

Every count is set at every round, zero included: a platform whose jobs all ended reads 0, not the last
number it had. Each configured platform reads 0 from the first round after a start, so a restarted
monitor is right at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cirasa.common.metrics import JOBS_ACTIVE
from cirasa.monitor.documents import ACTIVE

Labels = tuple[str, str]  # (platform, state)


class ActiveJobsGauge:
    def __init__(self, platforms: Iterable[str]) -> None:
        self._labels: set[Labels] = {(platform, state) for platform in platforms for state in ACTIVE}

    def publish(self, counts: Mapping[Labels, int]) -> None:
        """Set every count this monitor ever reported: those not in ``counts`` are 0 now."""
        self._labels |= counts.keys()
        for platform, state in sorted(self._labels):
            JOBS_ACTIVE.labels(platform, state).set(counts.get((platform, state), 0))
