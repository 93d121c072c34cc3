"""Admission: a gateway takes submissions no faster than the planner answers them.

Without it, a gateway under more load than the services behind it can carry keeps answering 202 while
the planner's queue grows: every job's status then lags its events by the length of that queue
(seconds, growing for as long as the load lasts). Here at most ``limit`` of this gateway's submissions
may be waiting for the planner's first word (an offer, a NO, a state, a place in the queue for
capacity) at once; the next one waits for room, up to ``max_wait_s``, then gets a 503 with
``Retry-After`` and changes nothing. So a job's status lags by about ``limit`` over the rate the
planner answers, whatever the load.

A submission unanswered after ``forget_after_s`` stops counting (its answer was lost: the gateway's
re-proposal takes care of it). Counts are per gateway process; they start empty.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict

from cirasa.gateway.errors import Busy


class Admission:
    def __init__(self, limit: int, max_wait_s: float, forget_after_s: float = 60.0) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.forget_after_s = forget_after_s
        self._unanswered: OrderedDict[str, float] = OrderedDict()  # job id -> when admitted
        self._room = asyncio.Event()

    @property
    def unanswered(self) -> int:
        self._forget_old()
        return len(self._unanswered)

    async def admit(self, job_id: str) -> None:
        """Count ``job_id`` in once there is room; :class:`Busy` after ``max_wait_s`` without."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while self.unanswered >= self.limit:
            self._room.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise Busy(
                    f"The platform is busy: {self.limit} submissions are waiting for the planner; "
                    "try again in a moment",
                    retry_after_s=max(1, math.ceil(self.max_wait_s)),
                )
            try:
                await asyncio.wait_for(self._room.wait(), timeout=min(left, 0.5))
            except TimeoutError:
                continue
        self._unanswered[job_id] = loop.time()

    def answered(self, job_id: str) -> None:
        """The planner said something about ``job_id``: it no longer counts."""
        if self._unanswered.pop(job_id, None) is not None:
            self._room.set()

    def withdraw(self, job_id: str) -> None:
        """The submission was not made after all (its write failed)."""
        self.answered(job_id)

    def _forget_old(self) -> None:
        cutoff = asyncio.get_running_loop().time() - self.forget_after_s
        while self._unanswered:
            job_id, since = next(iter(self._unanswered.items()))
            if since > cutoff:
                break
            del self._unanswered[job_id]
            self._room.set()
