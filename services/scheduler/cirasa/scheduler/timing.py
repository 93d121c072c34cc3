"""When the scheduler tries a job again, and how long the job may run: pure rules, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from cirasa.common.bus.base import TRANSIENT_ERRORS
from cirasa.common.events import JobSubmitted, as_utc

# The backend or the network failed, not the job: the (idempotent) submit is tried again. OSError
# covers ConnectionError and TimeoutError; an answer lost this way may hide a job that did start.
TRANSIENT: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError)
MAX_ATTEMPTS = 5
MAX_BACKOFF_S = 30.0


def backoff(attempts: int) -> timedelta:
    """The pause before the next try after ``attempts`` failed ones (1 s, 2 s, 4 s, ...)."""
    return timedelta(seconds=min(2.0 ** max(attempts - 1, 0), MAX_BACKOFF_S))


def booked_wall_time(ev: JobSubmitted, now: datetime) -> int:
    """Whole seconds the job may run from ``now``: its wall time, cut at the end of its booking
    (``booked_until``; None: no cap). 0 when nothing of the booking is left."""
    if ev.booked_until is None:
        return ev.resources.duration_s
    left = int((as_utc(ev.booked_until) - now).total_seconds())
    return max(0, min(ev.resources.duration_s, left))


def too_late(ev: JobSubmitted, now: datetime) -> str:
    """Why a job whose booking is over was not started, for the person who submitted it."""
    start = as_utc(ev.start) if ev.start else ev.occurred_at
    late = max((now - start).total_seconds(), 0.0)
    return (
        f"Job was not started: its booked start passed {late:.0f} s ago while the scheduler was "
        "unavailable, and its booked time is over; submit it again"
    )
