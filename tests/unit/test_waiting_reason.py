"""What a waiting auto-accepted task waits for: the platform, what it lacks, who holds it and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cirasa.common.events import ResourceRequest
from cirasa.planner.calendar import Booking
from cirasa.planner.platform_state import PlatformState
from cirasa.planner.waiting_reason import GENERIC, clock, waiting_reason

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ONE_CORE = ResourceRequest(min_cores=1, max_cores=1, min_memory_gib=1, max_memory_gib=1, duration_s=600)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def offer(holder: str, cores: int, expires_s: float, end_s: float = 3600) -> Booking:
    return Booking(holder, cores, 1024, at(-10), at(end_s), "offer", None, at(expires_s), "someone")


def job(holder: str, cores: int, end_s: float, memory_mib: int = 1024) -> Booking:
    return Booking(holder, cores, memory_mib, at(-60), at(end_s), "job", holder, None, "someone")


def platform(name: str, *bookings: Booking, cores: int = 2, memory_mib: int = 4096) -> PlatformState:
    return PlatformState(name, cores, memory_mib, 1, bookings)


def test_offers_holding_the_platform_are_named_with_their_expiry() -> None:
    local = platform("local", offer("o1", 2, expires_s=65))
    assert waiting_reason(ONE_CORE, [local], NOW) == (
        "Waiting for 1 core on local, held by 1 unaccepted offer until 12:01:05 UTC"
    )


def test_only_the_bookings_that_must_free_are_named() -> None:
    two = ResourceRequest(min_cores=2, max_cores=2, duration_s=600)
    local = platform("local", offer("o1", 1, expires_s=30), job("j1", 1, end_s=300), cores=2)
    assert waiting_reason(two, [local], NOW) == (
        "Waiting for 2 cores on local, held by 1 unaccepted offer and 1 running job "
        "until 12:05:00 UTC at the latest"
    )
    assert waiting_reason(ONE_CORE, [local], NOW) == (
        "Waiting for 1 core on local, held by 1 unaccepted offer until 12:00:30 UTC"
    )


def test_memory_is_named_when_it_is_what_lacks() -> None:
    local = platform("local", job("j1", 1, end_s=7200, memory_mib=3584), cores=4, memory_mib=4096)
    assert waiting_reason(ONE_CORE, [local], NOW) == (
        "Waiting for 1 GiB of memory on local, held by 1 running job until 14:00:00 UTC at the latest"
    )


def test_the_platform_that_frees_first_is_named_and_another_day_has_its_date() -> None:
    slow = platform("slow", job("j1", 2, end_s=86400))
    fast = platform("fast", offer("o1", 2, expires_s=20))
    assert waiting_reason(ONE_CORE, [slow, fast], NOW).startswith("Waiting for 1 core on fast,")
    assert waiting_reason(ONE_CORE, [slow], NOW).endswith("until 2026-03-02 12:00:00 UTC at the latest")


def test_room_now_but_booked_later_says_when_it_fits() -> None:
    later = Booking("o1", 2, 1024, at(300), at(900), "offer", None, at(60), "someone")
    local = platform("local", later)
    assert waiting_reason(ONE_CORE, [local], NOW) == (
        "Waiting on local: room now, but booked again within the job's 600 s; it fits from 12:15:00 UTC"
    )


def test_room_now_for_the_whole_run_says_it_is_placed_next() -> None:
    assert waiting_reason(ONE_CORE, [platform("local")], NOW) == (
        "Waiting on local: there is room now; it is placed at the next round"
    )


def test_other_work_on_a_cluster_and_no_platform_at_all() -> None:
    external = Booking("external:hpc", 2, 1024, at(-5), at(120), "job", None, None)
    hpc = platform("hpc", external)
    assert waiting_reason(ONE_CORE, [hpc], NOW) == (
        "Waiting for 1 core on hpc, held by other work on the cluster until 12:02:00 UTC at the latest"
    )
    assert waiting_reason(ONE_CORE, [], NOW) == GENERIC
    assert clock(at(5), NOW) == "12:00:05 UTC"
