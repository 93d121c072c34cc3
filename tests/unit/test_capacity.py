"""Reservations are atomic: racing reservers never over-book, and reserve/release are idempotent."""

from __future__ import annotations

import asyncio
import random

from cirasa.common.settings import PlatformConfig
from cirasa.common.store import memory_client
from cirasa.planner.capacity import CapacityBook


async def test_concurrent_reservations_never_overbook() -> None:
    platform = PlatformConfig(name="p", cores=8, memory_gib=8, max_duration_s=60)
    coll = memory_client()["cap"]["platforms"]
    books = [CapacityBook(coll, [platform]) for _ in range(3)]  # three planner replicas, one database
    await books[0].sync_platforms()
    rng = random.Random(7)

    async def worker(i: int) -> None:
        book = books[i % 3]
        for j in range(40):
            holder = f"{i}-{j}"
            if await book.reserve("p", holder, rng.randint(1, 3), rng.randint(256, 2048)):
                doc = await coll.find_one({"_id": "p"})
                assert doc["used_cores"] <= 8 and doc["used_memory_mib"] <= 8 * 1024
                await asyncio.sleep(0)
                assert await book.release(holder) is not None

    await asyncio.gather(*(worker(i) for i in range(12)))
    doc = await coll.find_one({"_id": "p"})
    assert doc["used_cores"] == 0 and doc["used_memory_mib"] == 0 and doc["reservations"] == []


async def test_reserve_and_release_are_idempotent() -> None:
    platform = PlatformConfig(name="p", cores=4, memory_gib=4, max_duration_s=60)
    book = CapacityBook(memory_client()["cap2"]["platforms"], [platform])
    await book.sync_platforms()
    assert await book.reserve("p", "job", 2, 1024)
    assert not await book.reserve("p", "job", 2, 1024)  # the same holder cannot hold twice
    assert await book.free("p") == (2, 3072)
    assert await book.release("job") is not None
    assert await book.release("job") is None
    assert await book.free("p") == (4, 4096)
    assert not await book.reserve("p", "big", 5, 1024)
