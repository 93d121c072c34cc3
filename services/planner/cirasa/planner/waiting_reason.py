"""What a waiting auto-accepted task waits for, in words a person can act on.

"Waiting for 2 cores on local, held by 1 unaccepted offer until 12:03:05 UTC": for each platform that
could run the task, what it lacks now (cores, memory), which bookings in force hold it, and when enough
of them free (an unaccepted offer at its expiry, a job at the end of its booking, at the latest). The
platform that frees soonest is named. Reading every booking of a platform costs O(n); it is done when a
task starts waiting or is proposed again, not on the placement path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cirasa.common.events import ResourceRequest
from cirasa.planner.calendar import DISPATCH_SLACK, Booking
from cirasa.planner.capacity import mib
from cirasa.planner.offers import MAX_WINDOW
from cirasa.planner.platform_state import PlatformState

GENERIC = "Waiting for free capacity"
EXTERNAL_PREFIX = "external:"  # the booking that stands for other users' work on a cluster (backend_load)


@dataclass(frozen=True)
class Wait:
    """Why a task waits on one platform, and until when (the sooner, the likelier it goes there)."""

    until: datetime
    text: str


def waiting_reason(req: ResourceRequest, states: Sequence[PlatformState], now: datetime) -> str:
    """The reason on the platform that frees soonest, or the generic text when none is given."""
    waits = [wait_on(state, req, now) for state in states]
    return min(waits, key=lambda w: w.until).text if waits else GENERIC


def wait_on(state: PlatformState, req: ResourceRequest, now: datetime) -> Wait:
    need_c, need_m = req.min_cores, mib(req.min_memory_gib)
    in_force = [b for b in state.held.values() if b.start <= now < b.end]
    free_c = state.cores - sum(b.cores for b in in_force)
    free_m = state.memory_mib - sum(b.memory_mib for b in in_force)
    lacking = _lacking(need_c - free_c, need_m - free_m, need_c, need_m)
    if not lacking:
        return _booked_later(state, req, now)
    freed_c, freed_m, holders = free_c, free_m, []
    until = now
    for when, booking in sorted(((frees_at(b, now), b) for b in in_force), key=lambda p: p[0]):
        freed_c, freed_m, until = freed_c + booking.cores, freed_m + booking.memory_mib, when
        holders.append(booking)
        if freed_c >= need_c and freed_m >= need_m:
            break
    latest = " at the latest" if any(b.kind == "job" for b in holders) else ""
    held = f"held by {describe(holders)} until {clock(until, now)}{latest}"
    return Wait(until, f"Waiting for {lacking} on {state.name}, {held}")


def _lacking(short_c: int, short_m: int, need_c: int, need_m: int) -> str:
    """What the platform lacks now, in the task's own terms ("" when it has room)."""
    parts = []
    if short_c > 0:
        parts.append(f"{need_c} core{'s' if need_c != 1 else ''}")
    if short_m > 0:
        parts.append(f"{need_m / 1024:g} GiB of memory")
    return " and ".join(parts)


def _booked_later(state: PlatformState, req: ResourceRequest, now: datetime) -> Wait:
    """Room now, but not for the task's whole duration: something is booked to start before it ends."""
    duration = timedelta(seconds=req.duration_s) + DISPATCH_SLACK
    start = state.calendar.earliest_start(
        state.cores, state.memory_mib, req.min_cores, mib(req.min_memory_gib), duration, now, now + MAX_WINDOW
    )
    if start is not None and start <= now:  # a race with what freed it: the next drain places it
        return Wait(now, f"Waiting on {state.name}: there is room now; it is placed at the next round")
    until = start or now + MAX_WINDOW
    when = f"; it fits from {clock(start, now)}" if start else ""
    return Wait(
        until,
        f"Waiting on {state.name}: room now, but booked again within the job's {req.duration_s} s{when}",
    )


def frees_at(booking: Booking, now: datetime) -> datetime:
    """When a booking gives its capacity back: an unaccepted offer at its expiry, anything else at its end."""
    end = booking.end
    if booking.kind == "offer" and booking.expires_at is not None:
        end = min(end, booking.expires_at)
    return max(end, now)


def describe(holders: Iterable[Booking]) -> str:
    """ "2 unaccepted offers and 1 running job"."""
    offers = jobs = external = 0
    for b in holders:
        if b.holder.startswith(EXTERNAL_PREFIX):
            external += 1
        elif b.kind == "offer":
            offers += 1
        else:
            jobs += 1
    parts = [f"{offers} unaccepted offer{'s' if offers != 1 else ''}"] if offers else []
    parts += [f"{jobs} running job{'s' if jobs != 1 else ''}"] if jobs else []
    parts += ["other work on the cluster"] if external else []
    return " and ".join(parts)


def clock(when: datetime, now: datetime) -> str:
    """ "12:03:05 UTC" today, with the date on another day."""
    pattern = "%H:%M:%S UTC" if when.date() == now.date() else "%Y-%m-%d %H:%M:%S UTC"
    return when.strftime(pattern)
