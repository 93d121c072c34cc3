"""A platform's bookings in memory, indexed for the questions the planner asks on every offer.

The state is at one ``version`` of the platform (see ``ledger``) and moves forward by applying the
changes committed after it. Every question an offer asks costs a dictionary lookup or a binary search
(and the steps of the calendar it looks at), whatever the number of live bookings: by holder, what a
user's unaccepted offers hold over time (a calendar per user), a user's jobs, the bookings of a job,
and the platform's usage step function (``Calendar``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cirasa.planner.calendar import Booking, Calendar
from cirasa.planner.documents import BookingChange


class PlatformState:
    def __init__(
        self, name: str, cores: int, memory_mib: int, version: int, bookings: Iterable[Booking] = ()
    ) -> None:
        self.name = name
        self.cores = cores
        self.memory_mib = memory_mib
        self.version = version
        self.last: BookingChange | None = None  # the change that made ``version``
        self.materialised = version  # every change up to this one is in the bookings collection
        self.held: dict[str, Booking] = {}
        self._jobs_of: dict[str, set[str]] = {}  # user -> holders of their jobs' bookings
        self._offers: set[str] = set()  # holders of every unaccepted offer
        self._offered_to: dict[str, Calendar] = {}  # user -> what their unaccepted offers hold, over time
        self._of_job: dict[str, set[str]] = {}  # job id -> holders
        for b in bookings:
            self._index(b)
        self.calendar = Calendar(self.held.values())  # built once, in O(n log n)

    @property
    def bookings(self) -> list[Booking]:
        """Every booking (a copy: O(n), for loops and tests, not for the offer path)."""
        return list(self.held.values())

    def apply(self, change: BookingChange) -> None:
        """Move to the version ``change`` made (it must be the next one)."""
        for holder in change.drop:
            self._drop(holder)
        for b in change.put:
            self._drop(b.holder)
            self._index(b)
            self.calendar.add(b)
        if change.totals is not None:
            self.cores, self.memory_mib = change.totals
        self.version = change.v
        self.last = change

    def offers(self) -> list[Booking]:
        """Every unaccepted offer's booking."""
        return [self.held[h] for h in self._offers]

    def offered_peak(self, user: str, start: datetime, end: datetime) -> tuple[int, int]:
        """Most cores and memory the user's unaccepted offers hold at any instant of ``[start, end)``."""
        calendar = self._offered_to.get(user)
        return calendar.peak(start, end) if calendar is not None else (0, 0)

    def jobs_of(self, user: str) -> list[Booking]:
        """The bookings of the user's jobs."""
        return [self.held[h] for h in self._jobs_of.get(user, ())]

    def holders_of_job(self, job_id: str) -> set[str]:
        """The bookings of a job: confirmed ones name it, and an accepted offer's id is its job's."""
        holders = set(self._of_job.get(job_id, ()))
        if job_id in self.held:
            holders.add(job_id)
        return holders

    def cores_at(self, when: datetime) -> int:
        """Cores booked at the instant ``when``."""
        return self.calendar.usage_at(when)[0]

    def _index(self, b: Booking) -> None:
        self.held[b.holder] = b
        if b.kind == "offer":
            self._offers.add(b.holder)
            if b.user is not None:
                self._offered_to.setdefault(b.user, Calendar()).add(b)
        elif b.user is not None:
            self._jobs_of.setdefault(b.user, set()).add(b.holder)
        if b.job_id is not None:
            self._of_job.setdefault(b.job_id, set()).add(b.holder)

    def _drop(self, holder: str) -> None:
        b = self.held.pop(holder, None)
        if b is None:
            return
        self.calendar.remove(b)
        if b.kind == "offer":
            self._offers.discard(holder)
            if b.user is not None:
                offered = self._offered_to[b.user]
                offered.remove(b)
                if not offered.times:
                    del self._offered_to[b.user]
        elif b.user is not None:
            _discard(self._jobs_of, b.user, holder)
        if b.job_id is not None:
            _discard(self._of_job, b.job_id, holder)


def _discard(index: dict[str, set[str]], key: str, holder: str) -> None:
    holders = index[key]
    holders.discard(holder)
    if not holders:
        del index[key]
