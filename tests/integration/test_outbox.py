"""The outbox's fast path: a writer claims its entries in the write that queues them and hands them to
``flush``, which publishes them (all confirms in flight at once) and pulls them in one write; the sweep
leaves them alone while the claim holds and takes them at once when a publish failed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from cirasa.common.bus import MemoryBroker, MemoryBus
from cirasa.common.events import Event, JobState, JobStateChanged, utcnow
from cirasa.common.outbox import CLAIM_TTL, OutboxRelay, queue_claimed
from cirasa.common.store import Collection
from tests.conftest import store_database, wait_for


class GatedBus(MemoryBus):
    """Publishes only once ``release`` is set (a slow broker); event ids in ``refuse`` fail."""

    def __init__(self) -> None:
        super().__init__("svc", MemoryBroker(), "x", None)
        self.published: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.refuse: set[str] = set()

    async def publish(self, event: Event) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            if event.event_id in self.refuse:
                raise ConnectionError("the broker refused it")
            self.published.append(event.event_id)
        finally:
            self.in_flight -= 1


class Counted:
    """A collection that counts the calls made to it."""

    def __init__(self, inner: Collection) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


async def outbox_of(coll: Collection) -> list[dict[str, Any]]:
    doc = await coll.find_one({"_id": "j"})
    assert doc is not None
    return list(doc["outbox"])


def events(n: int) -> list[Event]:
    return [JobStateChanged(correlation_id="j", job_id="j", state=JobState.RUNNING, seq=i) for i in range(n)]


async def test_the_sweep_leaves_what_a_live_request_is_publishing() -> None:
    """The write-time claim: without it the sweep would publish the entry a second time meanwhile."""
    coll = store_database("outbox")["docs"]
    bus = GatedBus()
    relay = OutboxRelay(bus, [coll], "svc")
    queued = queue_claimed(events(1))
    await coll.insert_one({"_id": "j", "outbox": queued.entries})
    flushing = asyncio.create_task(relay.flush(coll, "j", queued.entries))
    await wait_for(lambda: asyncio.sleep(0, bus.in_flight), 5, "the fast path to publish")
    assert await asyncio.wait_for(relay.sweep(min_age=timedelta(0)), 2) == 0
    bus.release.set()
    await flushing
    assert bus.published == [queued.entries[0]["event_id"]]
    assert await outbox_of(coll) == []


async def test_a_flush_of_what_was_written_is_one_store_operation() -> None:
    """No read-back, no separate claim: the confirms of every entry in flight at once, then one $pull."""
    inner = store_database("outbox")["docs"]
    coll = Counted(inner)
    bus = GatedBus()
    relay = OutboxRelay(bus, [inner], "svc")
    queued = queue_claimed(events(3))
    await inner.update_one({"_id": "j"}, {"$set": {"state": "x"}, "$push": queued.push}, upsert=True)
    flushing = asyncio.create_task(relay.flush(coll, "j", queued.entries))  # type: ignore[arg-type]
    await wait_for(lambda: asyncio.sleep(0, bus.in_flight == 3), 5, "three confirms awaited at once")
    bus.release.set()
    await flushing
    assert coll.calls == ["update_one"]
    assert sorted(bus.published) == sorted(e["event_id"] for e in queued.entries)
    assert await outbox_of(inner) == []


async def test_a_failed_publish_is_left_to_the_next_sweep_at_once() -> None:
    coll = store_database("outbox")["docs"]
    bus = GatedBus()
    bus.release.set()
    relay = OutboxRelay(bus, [coll], "svc")
    queued = queue_claimed(events(2))
    ok, refused = (e["event_id"] for e in queued.entries)
    bus.refuse.add(refused)
    await coll.insert_one({"_id": "j", "outbox": queued.entries})
    await relay.flush(coll, "j", queued.entries)  # does not raise
    left = await outbox_of(coll)
    assert [e["event_id"] for e in left] == [refused] and "claimed_at" not in left[0]
    bus.refuse.clear()
    assert await relay.sweep(min_age=timedelta(0)) == 1  # no need to wait for the claim to lapse
    assert sorted(bus.published) == sorted([ok, refused])
    assert await outbox_of(coll) == []


async def test_a_crashed_writers_claim_lapses() -> None:
    coll = store_database("outbox")["docs"]
    bus = GatedBus()
    bus.release.set()
    relay = OutboxRelay(bus, [coll], "svc")
    queued = queue_claimed(events(1))
    await coll.insert_one({"_id": "j", "outbox": queued.entries})  # and no flush: the writer crashed
    assert await relay.sweep(min_age=timedelta(0)) == 0  # its claim holds a while
    await coll.update_one({"_id": "j"}, {"$set": {"outbox.0.claimed_at": utcnow() - CLAIM_TTL * 2}})
    assert await relay.sweep(min_age=timedelta(0)) == 1
    assert await outbox_of(coll) == []


async def test_a_flush_never_raises_when_the_store_is_away() -> None:
    class Away:
        async def update_one(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the store is away")

        async def find_one(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the store is away")

    bus = GatedBus()
    bus.release.set()
    relay = OutboxRelay(bus, [], "svc")
    queued = queue_claimed(events(1))
    await relay.flush(Away(), "j", queued.entries)  # type: ignore[arg-type]
    assert bus.published == [queued.entries[0]["event_id"]]
