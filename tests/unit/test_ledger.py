"""A platform's bookings as stored (``ledger``) and as kept in memory (``PlatformState``, ``Calendar``):
the calendar kept up to date booking by booking is the one built afresh; a replica behind catches up;
what a writer that crashed after its commit did not store is stored by the next one; a late write of
an older change never undoes a newer one."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from cirasa.common.settings import PlatformConfig
from cirasa.planner.calendar import Booking, Calendar
from cirasa.planner.capacity import CapacityBook
from cirasa.planner.documents import BookingChange
from cirasa.planner.ledger import Ledger, stored_bookings
from cirasa.planner.platform_state import PlatformState
from tests.conftest import store_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLATFORM = PlatformConfig(name="p", cores=16, memory_gib=16, max_duration_s=3600)


def booking(holder: str, cores: int, start: float, end: float, **kw: Any) -> Booking:
    span = T0 + timedelta(minutes=start), T0 + timedelta(minutes=end)
    return Booking(holder, cores, cores * 100, *span, **kw)


def steps(calendar: Calendar) -> list[tuple[datetime, int, int]]:
    """The step function without the steps that change nothing (where they fall is no matter)."""
    out: list[tuple[datetime, int, int]] = []
    for when, cores, mem in zip(calendar.times, calendar.cores, calendar.memory, strict=True):
        if not out or (out[-1][1], out[-1][2]) != (cores, mem):
            out.append((when, cores, mem))
    return out


def test_a_calendar_kept_up_to_date_is_the_one_built_afresh() -> None:
    rng = random.Random(3)
    live: dict[str, Booking] = {}
    calendar = Calendar()
    for i in range(2000):
        if live and rng.random() < 0.4:
            gone = live.pop(rng.choice(sorted(live)))
            calendar.remove(gone)
        else:
            start = rng.choice([rng.uniform(0, 600), float(rng.randrange(0, 600, 30))])  # shared ends too
            b = booking(f"b{i}", rng.randint(1, 4), start, start + rng.choice([0, 30, rng.uniform(1, 240)]))
            live[b.holder] = b
            calendar.add(b)
        if i % 97 == 0:
            assert steps(calendar) == steps(Calendar(live.values()))
    assert steps(calendar) == steps(Calendar(live.values()))
    for b in list(live.values()):
        calendar.remove(b)
    assert (calendar.times, calendar.cores) == ([], [])  # nothing left behind


async def test_a_replica_behind_catches_up_by_the_last_change_or_by_reading_the_bookings() -> None:
    db = store_database("ledger1")
    first, second = CapacityBook(db, [PLATFORM]), CapacityBook(db, [PLATFORM])
    await first.sync_platforms()
    await second.state("p")
    assert await first.book("p", booking("a", 4, 0, 10))
    behind_one = await second.state("p")  # one version behind: the platform's last change is enough
    assert set(behind_one.held) == {"a"}
    for name in "bcd":
        assert await first.book("p", booking(name, 1, 0, 10))
    assert await first.release("p", {"a"})
    far_behind = await second.state("p")  # several versions behind: reads the bookings again
    assert set(far_behind.held) == {"b", "c", "d"}
    assert far_behind.version == (await first.state("p")).version
    assert steps(far_behind.calendar) == steps((await first.state("p")).calendar)


async def test_what_a_writer_committed_but_did_not_store_is_stored_by_the_next_one() -> None:
    db = store_database("ledger2")
    book = CapacityBook(db, [PLATFORM])
    await book.sync_platforms()
    ledger = Ledger(db)
    state = await ledger.load("p")
    assert state is not None

    async def crash_before_storing(platform: str, change: BookingChange) -> None:
        pass

    ledger.write = crash_before_storing  # type: ignore[method-assign]
    assert await ledger.commit(state, BookingChange(v=state.version + 1, put=[booking("x", 2, 0, 10)]))
    assert await db["bookings"].find_one({"_id": "x"}) is None  # committed, not yet stored
    assert [b.holder for b in await stored_bookings(db, "p")] == ["x"]  # still read: it is ``last``
    assert await book.book("p", booking("y", 2, 0, 10))  # the next writer stores it before its own
    stored = {d["_id"] async for d in db["bookings"].find({"removed": False})}
    assert stored == {"x", "y"}


async def test_a_late_write_of_an_older_change_never_undoes_a_newer_one() -> None:
    db = store_database("ledger3")
    ledger = Ledger(db)
    await ledger.write("p", BookingChange(v=5, drop=["x"]))
    await ledger.write("p", BookingChange(v=4, put=[booking("x", 2, 0, 10)]))  # late, older
    doc = await db["bookings"].find_one({"_id": "x"})
    assert doc is not None and doc["removed"] is True and doc["v"] == 5


async def test_bookings_of_an_earlier_release_are_moved_to_booking_documents() -> None:
    db = store_database("ledger4")
    legacy = booking("old", 3, 0, 10, kind="job", job_id="job-old")
    await db["platforms"].insert_one(
        {"_id": "p", "cores": 16, "memory_mib": 16384, "version": 7, "bookings": [legacy.to_doc()]}
    )
    book = CapacityBook(db, [PLATFORM])
    await book.sync_platforms()
    assert (await book.state("p")).bookings == [legacy]
    raw = await db["platforms"].find_one({"_id": "p"})
    assert raw is not None and "bookings" not in raw
    assert not await book.book("p", booking("big", 14, 0, 10))  # the old booking still holds its cores


def test_peak_and_earliest_start_agree_with_a_minute_by_minute_count() -> None:
    rng = random.Random(11)
    for _ in range(60):
        books = []
        for i in range(rng.randint(0, 12)):
            start = rng.randrange(0, 120)
            books.append(booking(f"b{i}", rng.randint(1, 4), start, start + rng.randint(0, 40)))
        calendar = Calendar(books)

        def used(minute: int, books: list[Booking] = books) -> int:
            t = T0 + timedelta(minutes=minute)
            return sum(b.cores for b in books if b.start <= t < b.end)

        a, b = sorted(rng.sample(range(-5, 170), 2))
        assert calendar.peak(T0 + timedelta(minutes=a), T0 + timedelta(minutes=b))[0] == max(
            used(m) for m in range(a, b)
        )
        need, length, total = rng.randint(1, 6), rng.randint(1, 30), 6
        first, last = sorted(rng.sample(range(0, 150), 2))
        expected = next(
            (s for s in range(first, last + 1) if all(used(m) + need <= total for m in range(s, s + length))),
            None,
        )
        found = calendar.earliest_start(
            total,
            10**6,
            need,
            0,
            timedelta(minutes=length),
            T0 + timedelta(minutes=first),
            T0 + timedelta(minutes=last),
        )
        assert found == (None if expected is None else T0 + timedelta(minutes=expected))


def test_the_indexes_of_a_platform_state_answer_as_a_scan_would() -> None:
    rng = random.Random(5)
    state = PlatformState("p", 16, 16384, 0)
    for v in range(1, 400):
        if state.held and rng.random() < 0.35:
            change = BookingChange(v=v, drop=[rng.choice(sorted(state.held))])
        else:
            holder = f"h{rng.randrange(60)}"  # reused holders: a put replaces
            kind = rng.choice(["offer", "job"])
            job = rng.choice([None, holder, f"job{rng.randrange(20)}"]) if kind == "job" else None
            user = rng.choice([None, "ann", "bob"])
            start = rng.uniform(0, 100)
            change = BookingChange(
                v=v,
                put=[booking(holder, rng.randint(1, 3), start, start + 20, kind=kind, job_id=job, user=user)],
            )
        state.apply(change)
        books = state.bookings
        assert {b.holder for b in state.offers()} == {b.holder for b in books if b.kind == "offer"}
        for user in ("ann", "bob"):
            mine = Calendar([b for b in books if b.kind == "offer" and b.user == user])
            a, z = sorted(rng.uniform(-10, 130) for _ in range(2))
            span = T0 + timedelta(minutes=a), T0 + timedelta(minutes=z)
            assert state.offered_peak(user, *span) == mine.peak(*span)
            assert {b.holder for b in state.jobs_of(user)} == {
                b.holder for b in books if b.kind == "job" and b.user == user
            }
        for job in ("job3", "h7"):
            assert state.holders_of_job(job) == {b.holder for b in books if job in (b.job_id, b.holder)}
    assert steps(state.calendar) == steps(Calendar(state.bookings))
