"""A platform's capacity over time: bookings, and where a new one fits.

Every booking holds cores and memory over ``[start, end)``. A new booking fits at ``s`` when, at every
instant of ``[s, s + duration)``, what is already booked plus what it needs stays within the
platform's totals. Free capacity is a step function of time (``Calendar``, built once per set of
bookings in O(n log n)); the earliest fitting start is one sweep over its steps from the window's start.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cirasa.common.events import as_utc

BookingKind = Literal["offer", "job"]

DISPATCH_SLACK = timedelta(seconds=30)
"""Added to the end of every booking for a job (and for an offer, which may become one): a job is
dispatched a little after its start (the scheduler's loop, the runner starting it) and runs its whole
duration from there, so its booking must outlast ``start + duration``. The scheduler stops a job at the
end of its booking (``JobSubmitted.booked_until``), so a job later than this is cut short, never run
over the next booking."""


@dataclass(frozen=True)
class Booking:
    holder: str  # the offer id
    cores: int
    memory_mib: int
    start: datetime
    end: datetime
    kind: BookingKind = "offer"
    job_id: str | None = None
    expires_at: datetime | None = None
    user: str | None = None  # whose offer holds it (the per-user share of unaccepted offers)

    def to_doc(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "cores": self.cores,
            "memory_mib": self.memory_mib,
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "job_id": self.job_id,
            "expires_at": self.expires_at,
            "user": self.user,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Booking:
        return cls(
            holder=doc["holder"],
            cores=doc["cores"],
            memory_mib=doc["memory_mib"],
            start=as_utc(doc["start"]),
            end=as_utc(doc["end"]),
            kind=doc.get("kind", "offer"),
            job_id=doc.get("job_id"),
            expires_at=as_utc(doc["expires_at"]) if doc.get("expires_at") else None,
            user=doc.get("user"),
        )


@dataclass(frozen=True)
class Step:
    """Usage constant over ``[start, end)``."""

    start: datetime
    end: datetime | None  # None: open-ended (nothing booked after ``start``)
    cores: int
    memory_mib: int


class Calendar:
    """Usage as a step function: built once from a set of bookings in O(n log n), then kept up to date
    booking by booking (:meth:`add`, :meth:`remove`), each costing a binary search and the steps the
    booking spans, so a calendar of thousands of bookings is never rebuilt on the hot path."""

    def __init__(self, bookings: Iterable[Booking] = ()) -> None:
        deltas: dict[datetime, list[int]] = {}
        self._ends: dict[datetime, int] = {}  # how many booking ends and starts fall on each time
        for b in bookings:
            for when, sign in ((b.start, 1), (b.end, -1)):
                d = deltas.setdefault(when, [0, 0])
                d[0] += sign * b.cores
                d[1] += sign * b.memory_mib
                self._ends[when] = self._ends.get(when, 0) + 1
        self.times = sorted(deltas)
        self.cores: list[int] = []  # usage from times[i] until times[i + 1]
        self.memory: list[int] = []
        cores = mem = 0
        for when in self.times:
            cores += deltas[when][0]
            mem += deltas[when][1]
            self.cores.append(cores)
            self.memory.append(mem)

    def add(self, b: Booking, sign: int = 1) -> None:
        """Count ``b`` in (``sign`` -1: take it out again; it must have been added)."""
        i = self._point(b.start)
        j = self._point(b.end)
        cores, memory = sign * b.cores, sign * b.memory_mib
        self.cores[i:j] = [c + cores for c in self.cores[i:j]]
        self.memory[i:j] = [m + memory for m in self.memory[i:j]]
        if sign < 0:
            self._unpoint(b.end, 2)
            self._unpoint(b.start, 2)

    def remove(self, b: Booking) -> None:
        self.add(b, -1)

    def _point(self, when: datetime) -> int:
        """The index of the step starting at ``when``, made (with the usage in force there) if none."""
        i = bisect_left(self.times, when)
        if i == len(self.times) or self.times[i] != when:
            self.times.insert(i, when)
            self.cores.insert(i, self.cores[i - 1] if i else 0)
            self.memory.insert(i, self.memory[i - 1] if i else 0)
        self._ends[when] = self._ends.get(when, 0) + 1
        return i

    def _unpoint(self, when: datetime, times: int) -> None:
        """Forget ``times`` uses of the point ``when``; the step goes once no booking starts or ends there
        (usage is then the same on both sides of it)."""
        left = self._ends[when] - times
        if left:
            self._ends[when] = left
            return
        del self._ends[when]
        i = bisect_left(self.times, when)
        del self.times[i], self.cores[i], self.memory[i]

    def steps(self, since: datetime) -> list[Step]:
        """The step function from ``since`` on (usage before the first booking is zero)."""
        return [Step(*step) for step in self._iter(since)]

    def _iter(self, since: datetime) -> Iterator[tuple[datetime, datetime | None, int, int]]:
        i = bisect_right(self.times, since) - 1
        n = len(self.times)
        yield (
            since,
            self.times[i + 1] if i + 1 < n else None,
            self.cores[i] if i >= 0 else 0,
            self.memory[i] if i >= 0 else 0,
        )
        for j in range(i + 1, n):
            yield self.times[j], self.times[j + 1] if j + 1 < n else None, self.cores[j], self.memory[j]

    def usage_at(self, when: datetime) -> tuple[int, int]:
        """Cores and memory booked at the instant ``when``."""
        i = bisect_right(self.times, when) - 1
        return (self.cores[i], self.memory[i]) if i >= 0 else (0, 0)

    def peak(self, start: datetime, end: datetime) -> tuple[int, int]:
        """Most cores and memory booked at any instant of ``[start, end)``: two binary searches and a
        ``max`` over the steps in between."""
        if start >= end:
            return 0, 0
        i = bisect_right(self.times, start) - 1  # the step in force at ``start`` (-1: none yet, zero)
        j = bisect_left(self.times, end)  # the steps starting before ``end``
        lo = max(i, 0)
        if j <= lo:
            return (self.cores[i], self.memory[i]) if i >= 0 else (0, 0)
        floor = 0 if i < 0 else self.cores[i]
        return max(floor, *self.cores[lo:j]), max(0 if i < 0 else self.memory[i], *self.memory[lo:j])

    def earliest_start(
        self,
        total_cores: int,
        total_mib: int,
        cores: int,
        memory_mib: int,
        duration: timedelta,
        window_start: datetime,
        window_end: datetime,
    ) -> datetime | None:
        """The earliest start in ``[window_start, window_end]`` where a booking fits its whole duration."""
        if cores > total_cores or memory_mib > total_mib or window_end < window_start:
            return None
        times, booked_c, booked_m = self.times, self.cores, self.memory
        max_c, max_m, n = total_cores - cores, total_mib - memory_mib, len(times)
        k = bisect_right(times, window_start) - 1  # the step in force at the window's start
        when, run_start, run_until = window_start, None, window_start
        while True:
            fits = k < 0 or (booked_c[k] <= max_c and booked_m[k] <= max_m)
            if when > window_end and (run_start is None or not fits):
                return None  # no run of free capacity starts inside the window
            if not fits:
                run_start = None
            else:
                if run_start is None:
                    run_start, run_until = when, when + duration
                if k + 1 >= n or times[k + 1] >= run_until:
                    return run_start
            k += 1
            if k >= n:
                return None
            when = times[k]


def usage_steps(bookings: Iterable[Booking], since: datetime) -> list[Step]:
    """The usage step function from ``since`` on."""
    return Calendar(bookings).steps(since)


def fits_at(calendar: Calendar, total_cores: int, total_mib: int, booking: Booking) -> bool:
    used_c, used_m = calendar.peak(booking.start, booking.end)
    return used_c + booking.cores <= total_cores and used_m + booking.memory_mib <= total_mib


def free_at(
    calendar: Calendar, total_cores: int, total_mib: int, start: datetime, duration: timedelta
) -> tuple[int, int]:
    """What is free for the whole of ``[start, start + duration)``."""
    used_c, used_m = calendar.peak(start, start + duration)
    return total_cores - used_c, total_mib - used_m
