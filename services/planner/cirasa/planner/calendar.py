"""A platform's capacity over time: bookings, and where a new one fits.

Every booking holds cores and memory over ``[start, end)``. A new booking fits at ``s`` when, at every
instant of ``[s, s + duration)``, what is already booked plus what it needs stays within the
platform's totals. Free capacity is a step function of time; the earliest fitting start is found by
one sweep over its steps, O(n log n) in the number of bookings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cirasa.common.events import as_utc

BookingKind = Literal["offer", "job"]


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
        )


@dataclass(frozen=True)
class Step:
    """Usage constant over ``[start, end)``."""

    start: datetime
    end: datetime | None  # None: open-ended (nothing booked after ``start``)
    cores: int
    memory_mib: int


def usage_steps(bookings: Iterable[Booking], since: datetime) -> list[Step]:
    """The usage step function from ``since`` on (bookings that ended before it are ignored)."""
    deltas: dict[datetime, list[int]] = {}
    for b in bookings:
        if b.end <= since:
            continue
        for when, sign in ((max(b.start, since), 1), (b.end, -1)):
            d = deltas.setdefault(when, [0, 0])
            d[0] += sign * b.cores
            d[1] += sign * b.memory_mib
    times = sorted(deltas)
    if not times or times[0] > since:
        times.insert(0, since)
        deltas.setdefault(since, [0, 0])
    steps: list[Step] = []
    cores = mem = 0
    for i, when in enumerate(times):
        cores += deltas[when][0]
        mem += deltas[when][1]
        steps.append(Step(when, times[i + 1] if i + 1 < len(times) else None, cores, mem))
    return steps


def peak(bookings: Iterable[Booking], start: datetime, end: datetime) -> tuple[int, int]:
    """Most cores and memory booked at any instant of ``[start, end)``."""
    top_c = top_m = 0
    for step in usage_steps(bookings, start):
        if step.start >= end:
            break
        top_c, top_m = max(top_c, step.cores), max(top_m, step.memory_mib)
    return top_c, top_m


def earliest_start(
    bookings: Sequence[Booking],
    total_cores: int,
    total_mib: int,
    cores: int,
    memory_mib: int,
    duration: timedelta,
    window_start: datetime,
    window_end: datetime,
) -> datetime | None:
    """The earliest start in ``[window_start, window_end]`` where the booking fits for its whole duration."""
    if cores > total_cores or memory_mib > total_mib or window_end < window_start:
        return None
    run_start: datetime | None = None
    for step in usage_steps(bookings, window_start):
        fits = step.cores + cores <= total_cores and step.memory_mib + memory_mib <= total_mib
        if not fits:
            run_start = None
            if step.start > window_end:
                return None
            continue
        if run_start is None:
            if step.start > window_end:
                return None
            run_start = step.start
        if step.end is None or step.end - run_start >= duration:
            return run_start
    return None


def fits_at(bookings: Sequence[Booking], total_cores: int, total_mib: int, booking: Booking) -> bool:
    used_c, used_m = peak(bookings, booking.start, booking.end)
    return used_c + booking.cores <= total_cores and used_m + booking.memory_mib <= total_mib


def free_at(
    bookings: Sequence[Booking], total_cores: int, total_mib: int, start: datetime, duration: timedelta
) -> tuple[int, int]:
    """What is free for the whole of ``[start, start + duration)``."""
    used_c, used_m = peak(bookings, start, start + duration)
    return total_cores - used_c, total_mib - used_m
