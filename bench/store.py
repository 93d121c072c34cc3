"""bench/store: the in-memory store on the gateway's hot path, mongomock as shipped vs the adapted double.

    .venv/bin/python bench/store.py [--sizes 1000,100000] [--seconds 1.0] [--json]

For each size, fills a collection with that many job-like documents of about 2 KB (a history array
of 20 entries among them), then times, through the async API the services use, the calls a request
makes: ``insert_one`` of a new document, ``find_one`` by ``_id``, ``update_one`` by ``_id`` with a
``$set`` and a ``$push`` onto the history, and a compare-and-swap ``update_one`` on
``{"_id", "version"}``; and what a periodic loop does: ``find({"state": "WAITING"})`` sorted, where
``state`` is the first key of an index and 10 documents match (the planner's drain; a secondary index
of the double, a scan for mongomock). Each call runs for ``--seconds`` (at least 3 times) on random
documents, once on plain mongomock (``plain_mongomock()``: the adaptations of
``cirasa.common.store.memory`` undone) and once on the adapted double, in this process, and the bench
prints calls/s side by side and their ratio. Both go through the same interleaving wrapper (one
``sleep(0)`` a call), so the ratio is the store's own cost. Filling 100,000 documents into plain
mongomock takes a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo_async_mock import AsyncMongoMockClient

from cirasa.common.store.memory import memory_client, plain_mongomock

HISTORY = 20
OPS = (
    "insert_one",
    "find_one by _id",
    "find 10 by indexed state",
    "update_one $set+$push",
    "update_one if version",
)
WAITING = 10
MAX_CALLS = 20_000


def document(i: int, now: datetime) -> dict[str, Any]:
    """A job as the gateway stores it, about 2 KB as JSON."""
    return {
        "_id": f"job-{i:08d}",
        "user": f"user-{i % 50}",
        "app": "sleep",
        "state": "RUNNING",
        "seq": 3,
        "version": 0,
        "submit_date": now,
        "tag": f"bench job {i}",
        "job_inputs": {f"param_{k}": f"value-{k}-{i}" for k in range(8)},
        "resources": {"cores": 4, "memory_gib": 8, "duration_s": 3600, "platform": "hpc"},
        "quote": {"cost": 12.5, "currency": "CHF", "valid_until": now + timedelta(hours=1)},
        "history": [
            {"at": now - timedelta(minutes=k), "state": "QUEUED", "note": f"step {k} of the job"}
            for k in range(HISTORY)
        ],
        "outbox": [],
    }


def doc_bytes() -> int:
    return len(json.dumps(document(0, datetime.now(UTC)), default=str))


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    if name == "mongomock":
        with plain_mongomock():
            yield
    else:
        yield


async def timed(call: Callable[[int], Awaitable[Any]], seconds: float) -> float:
    """Calls per second of ``call(n)``, n = 0, 1, ...: for ``seconds``, at least 3 calls."""
    n = 0
    started = time.perf_counter()
    while n < 3 or (time.perf_counter() - started < seconds and n < MAX_CALLS):
        await call(n)
        n += 1
    return n / (time.perf_counter() - started)


async def fill(coll: Any, size: int, now: datetime) -> None:
    for start in range(0, size, 1000):
        await coll.insert_many([document(i, now) for i in range(start, min(size, start + 1000))])


async def measure(size: int, seconds: float) -> dict[str, float]:
    """Calls/s of each operation on a fresh client holding ``size`` documents."""
    coll = AsyncMongoMockClient(tz_aware=True)["bench"]["jobs"]
    now = datetime.now(UTC)
    await coll.create_index([("state", 1), ("submit_date", 1)])
    await fill(coll, size, now)
    waiting = [f"job-{i * (size // WAITING):08d}" for i in range(WAITING)]
    await coll.update_many({"_id": {"$in": waiting}}, {"$set": {"state": "WAITING"}})
    await coll.count_documents({"state": "WAITING"})  # the double builds its map of state here
    gc.collect()
    gc.freeze()  # the documents stay: collections should not walk them during the timings
    rng = random.Random(1)
    versions: dict[int, int] = {}
    fresh = [document(size + i, now) for i in range(MAX_CALLS)]

    async def insert(n: int) -> None:
        await coll.insert_one(fresh[n])

    async def find(n: int) -> None:
        assert await coll.find_one({"_id": f"job-{rng.randrange(size):08d}"}) is not None

    async def indexed(n: int) -> None:
        docs = await coll.find({"state": "WAITING"}).sort("submit_date", 1).limit(500).to_list()
        assert len(docs) == WAITING

    async def push(n: int) -> None:
        entry = {"at": now, "state": "RUNNING", "note": f"update {n}"}
        update = {"$set": {"state": "RUNNING", "checked_at": now}, "$push": {"history": entry}}
        await coll.update_one({"_id": f"job-{rng.randrange(size):08d}"}, update)

    async def cas(n: int) -> None:
        i = rng.randrange(size)
        v = versions.get(i, 0)
        done = await coll.update_one(
            {"_id": f"job-{i:08d}", "version": v}, {"$set": {"state": "DONE"}, "$inc": {"version": 1}}
        )
        assert done.modified_count == 1
        versions[i] = v + 1

    try:
        return {
            op: await timed(call, seconds)
            for op, call in zip(OPS, (insert, find, indexed, push, cas), strict=True)  # updates last
        }
    finally:
        gc.unfreeze()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    memory_client()  # installs the adaptations and the interleaving
    rows = []
    for size in args.sizes:
        figures = {}
        for name in ("mongomock", "adapted"):
            with mode(name):
                figures[name] = await measure(size, args.seconds)
            gc.collect()
        for op in OPS:
            base, adapted = figures["mongomock"][op], figures["adapted"][op]
            rows.append(
                {"op": op, "docs": size, "mongomock": base, "adapted": adapted, "ratio": adapted / base}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1000, 100_000],
        help="e.g. 1000,100000",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent on each figure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"bench/store: documents of {doc_bytes()} bytes (as JSON), {args.seconds:g} s a figure, calls/s")
    print(f"  {'operation':<24} {'docs':>8} {'mongomock':>11} {'adapted':>11} {'ratio':>9}")
    for r in rows:
        print(
            f"  {r['op']:<24} {r['docs']:>8,} {r['mongomock']:>11,.0f} {r['adapted']:>11,.0f} "
            f"{r['ratio']:>8.1f}x"
        )


if __name__ == "__main__":
    main()
