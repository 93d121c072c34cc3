"""The in-memory double keeps what it promises while it copies little and never scans for an ``_id``.

Each guarantee has a test that fails without it: what a caller gets or hands in stays its own (the
stored documents are shared copy-on-write), a call by ``_id`` tests a handful of documents, not the
collection, two coroutines interleave between a read and a conditional write, and every answer is
the one plain mongomock gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from mongomock import filtering
from mongomock.filtering import filter_applies
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, WriteError
from pymongo_async_mock import AsyncMongoMockClient

from cirasa.common.store.memory import memory_client, plain_mongomock

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def job(i: int) -> dict[str, Any]:
    return {
        "_id": f"job-{i:04d}",
        "user": f"u{i % 3}",
        "version": 0,
        "state": "PENDING",
        "at": T0 + timedelta(minutes=i),
        "resources": {"cores": 1 + i % 4, "tags": ["a", "b"]},
        "outbox": [{"event_id": f"e{i}-{k}", "queued_at": T0, "claimed_at": None} for k in range(3)],
    }


@pytest.fixture
def coll() -> Any:
    return memory_client()["memory_store_test"]["jobs"]


async def test_a_returned_document_is_the_callers_own(coll: Any) -> None:
    await coll.insert_one(job(1))
    stored = await coll.find_one({"_id": "job-0001"})
    reads = [
        stored,
        await coll.find_one({"_id": "job-0001"}, {"outbox": 1}),
        (await coll.find({"user": "u1"}).to_list())[0],
        await coll.find_one_and_update({"_id": "job-0001"}, {"$inc": {"version": 0}}),
        await coll.find_one_and_update(
            {"_id": "job-0001"}, {"$inc": {"version": 0}}, return_document=ReturnDocument.AFTER
        ),
    ]
    for doc in reads:
        doc["state"] = "MUTATED"
        doc["outbox"][0]["claimed_at"] = T0
        doc["outbox"].append({"event_id": "mine"})
        doc.get("resources", {}).get("tags", []).append("c")
    assert stored is not None
    assert await coll.find_one({"_id": "job-0001"}) == job(1)


async def test_what_a_caller_hands_in_stays_its_own(coll: Any) -> None:
    doc = job(2)
    await coll.insert_one(doc)
    value: dict[str, Any] = {"cores": 8, "tags": ["x"]}
    entry = {"event_id": "pushed", "queued_at": T0}
    await coll.update_one({"_id": "job-0002"}, {"$set": {"resources": value}, "$push": {"outbox": entry}})
    inserted = {"n": [1]}
    await coll.update_one({"_id": "job-0003"}, {"$setOnInsert": {"inserted": inserted}}, upsert=True)
    doc["outbox"][0]["claimed_at"] = T0
    doc["resources"]["tags"].append("c")
    value["tags"].append("y")
    entry["event_id"] = "changed"
    inserted["n"].append(2)
    got = await coll.find_one({"_id": "job-0002"})
    assert got["resources"] == {"cores": 8, "tags": ["x"]}
    assert got["outbox"][0]["claimed_at"] is None
    assert got["outbox"][-1]["event_id"] == "pushed"
    assert (await coll.find_one({"_id": "job-0003"}))["inserted"] == {"n": [1]}


async def test_a_failed_update_leaves_the_document_as_it_was(coll: Any) -> None:
    await coll.insert_one(job(4))
    before = await coll.find_one({"_id": "job-0004"})
    with pytest.raises((TypeError, WriteError)):  # $inc of a string, after a $set: nothing may change
        await coll.update_one(
            {"_id": "job-0004"}, {"$set": {"version": 9, "outbox.0.claimed_at": T0}, "$inc": {"state": 1}}
        )
    assert await coll.find_one({"_id": "job-0004"}) == before


class CountingFilterer:
    """Counts how many times mongomock tests a filter against a document (nested tests included)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def apply(self, search_filter: Any, document: Any) -> bool:
        self.calls += 1
        return bool(self.inner.apply(search_filter, document))


@pytest.fixture
def filter_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingFilterer]:
    counting = CountingFilterer(filtering._filterer_inst)
    monkeypatch.setattr(filtering, "_filterer_inst", counting)
    yield counting


async def test_calls_by_id_do_not_scan(coll: Any, filter_tests: CountingFilterer) -> None:
    docs = 500
    await coll.insert_many([job(i) for i in range(docs)])
    elem = {"$elemMatch": {"event_id": "e7-1", "claimed_at": None}}
    calls = [
        coll.find_one({"_id": "job-0007"}),
        coll.find({"_id": {"$in": ["job-0007", "job-0008"]}}).to_list(),
        coll.count_documents({"_id": "job-0007", "version": 0}),
        coll.update_one({"_id": "job-0007"}, {"$set": {"state": "RUNNING"}, "$push": {"outbox": {"e": 1}}}),
        coll.update_one({"_id": "job-0007", "version": 0}, {"$inc": {"version": 1}}),
        coll.update_one({"_id": "job-0007", "outbox": elem}, {"$set": {"outbox.$.claimed_at": T0}}),
        coll.update_one({"_id": "job-0007"}, {"$pull": {"outbox": {"event_id": "e7-0"}}}),
        coll.update_many({"_id": "job-0008"}, {"$set": {"state": "DONE"}}),
        coll.find_one_and_update({"_id": "job-0007"}, {"$inc": {"version": 1}}),
        coll.replace_one({"_id": "job-0009"}, {"state": "REPLACED"}),
        coll.delete_one({"_id": "job-0010"}),
        coll.find_one_and_delete({"_id": "job-0011"}),
        coll.update_one({"_id": "job-9999"}, {"$set": {"state": "NEW"}}, upsert=True),
    ]
    for call in calls:
        filter_tests.calls = 0
        await call
        assert filter_tests.calls < 20, f"{call}: {filter_tests.calls} filter tests over {docs} documents"
    assert (await coll.find_one({"_id": "job-0007"}))["version"] == 2


async def test_a_read_then_conditional_write_race_has_one_winner(coll: Any) -> None:
    await coll.insert_one(job(5))

    async def bump() -> int:
        doc = await coll.find_one({"_id": "job-0005"})
        done = await coll.update_one({"_id": "job-0005", "version": doc["version"]}, {"$inc": {"version": 1}})
        return int(done.modified_count)

    assert sorted(await asyncio.gather(bump(), bump())) == [0, 1]
    assert (await coll.find_one({"_id": "job-0005"}))["version"] == 1


async def test_datetimes_come_back_tz_aware_and_unique_indexes_hold(coll: Any) -> None:
    await coll.insert_one({"_id": "a", "at": T0.replace(tzinfo=None), "key": 1})
    assert (await coll.find_one({"_id": "a"}))["at"] == T0
    assert (await coll.find_one({"_id": "a"}))["at"].tzinfo is not None
    await coll.create_index([("key", 1)], unique=True)
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"_id": "b", "key": 1})
    await coll.insert_one({"_id": "b", "key": 2})
    with pytest.raises(DuplicateKeyError):
        await coll.update_one({"_id": "b"}, {"$set": {"key": 1}})
    assert (await coll.find_one({"_id": "b"}))["key"] == 2
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"_id": "a"})


def summary(result: Any) -> Any:
    """A comparable form of what a call returned."""
    for attrs in (
        ("matched_count", "modified_count", "upserted_id"),
        ("inserted_id",),
        ("inserted_ids",),
        ("deleted_count",),
    ):
        if all(hasattr(result, a) for a in attrs):
            return tuple(getattr(result, a) for a in attrs)
    return result


async def script(c: Any) -> list[Any]:
    """Every kind of call the services make (and a few more), with their answers."""
    out: list[Any] = [summary(await c.insert_many([job(i) for i in range(6)]))]
    elem = {"$elemMatch": {"event_id": "e1-1", "claimed_at": None}}
    calls = [
        c.insert_one({"_id": "x", "when": datetime(2026, 1, 1, 12, 0, 0, 123456), "n": {"m": [3, 1]}}),
        c.update_one(
            {"_id": "job-0001", "version": 0}, {"$set": {"state": "RUNNING"}, "$inc": {"version": 1}}
        ),
        c.update_one({"_id": "job-0001", "version": 0}, {"$set": {"state": "LOST"}, "$inc": {"version": 1}}),
        c.update_one({"_id": "job-0001", "outbox": elem}, {"$set": {"outbox.$.claimed_at": T0}}),
        c.update_one({"_id": "job-0001", "outbox": elem}, {"$set": {"outbox.$.claimed_at": T0}}),
        c.update_one({"_id": "job-0001"}, {"$pull": {"outbox": {"event_id": "e1-0"}}}),
        c.update_one(
            {"_id": "job-0002"}, {"$push": {"outbox": {"$each": [{"event_id": "z"}], "$slice": -2}}}
        ),
        c.update_one({"_id": "job-0002"}, {"$unset": {"resources.tags": ""}, "$max": {"version": 5}}),
        c.update_one(
            {"_id": "job-0002"}, {"$addToSet": {"resources.tags": "q"}, "$rename": {"user": "owner"}}
        ),
        c.update_one({"_id": "job-0003"}, {"$set": {"resources.cores": 1}}),  # unchanged: not modified
        c.update_many({"user": "u0"}, {"$set": {"state": "DONE", "resources.cores": 9}}),
        c.update_one({"_id": "new"}, {"$setOnInsert": {"state": "NEW"}, "$inc": {"version": 1}}, upsert=True),
        c.update_one(
            {"_id": "new"}, {"$setOnInsert": {"state": "AGAIN"}, "$inc": {"version": 1}}, upsert=True
        ),
        c.replace_one({"_id": "job-0004"}, {"state": "REPLACED", "list": [1, 2]}),
        c.find_one_and_update({"_id": "job-0005"}, {"$push": {"outbox": {"event_id": "f"}}}),
        c.find_one_and_update(
            {"user": "u2"}, {"$inc": {"version": 1}}, sort=[("at", -1)], return_document=ReturnDocument.AFTER
        ),
        c.find_one_and_update({"_id": "nope"}, {"$set": {"a": 1}}),
        c.find_one_and_update(
            {"_id": "up"}, {"$set": {"a": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        ),
        c.find_one_and_delete({"_id": "job-0005"}),
        c.find_one({"_id": "job-0001"}),
        c.find_one({"_id": "job-0002"}, {"outbox": 0, "_id": 0}),
        c.find_one({"_id": "job-0001"}, {"resources.cores": 1, "state": 1}),
        c.find_one({"_id": "job-0001"}, {"outbox": {"$slice": 1}}),
        c.find_one({"user": "u0"}, sort=[("at", -1)], skip=1),
        c.find_one({"_id": "x"}),
        c.find({}, ["state", "version"]).sort("_id", 1).skip(1).limit(3).to_list(),
        c.find({"at": {"$gte": T0 + timedelta(minutes=2)}}, {"_id": 1}).sort("at", -1).to_list(),
        c.count_documents({"_id": {"$in": ["job-0001", "job-0002", "missing"]}}),
        c.count_documents({"state": "DONE"}),
        c.distinct("state"),
        c.delete_one({"_id": "job-0003"}),
        c.delete_many({"state": "DONE"}),
        c.find().sort("_id", 1).to_list(),
    ]
    for call in calls:
        out.append(summary(await call))
    aggregate = await c.aggregate(
        [{"$match": {"version": {"$gte": 0}}}, {"$group": {"_id": None, "n": {"$sum": 1}}}]
    )
    out.append(await aggregate.to_list())
    return out


async def test_every_answer_is_plain_mongomocks() -> None:
    memory_client()
    with plain_mongomock():
        expected = await script(AsyncMongoMockClient(tz_aware=True)["plain"]["jobs"])
    assert await script(memory_client()["adapted"]["jobs"]) == expected


# --- secondary indexes --------------------------------------------------------------------------------


async def test_indexed_queries_test_only_their_candidates(coll: Any, filter_tests: CountingFilterer) -> None:
    docs = 500
    await coll.create_index([("state", 1), ("at", 1)])
    await coll.create_index([("user", 1)])
    await coll.insert_many(
        [
            {**job(i), "state": "WAITING" if i % 100 == 0 else "RUNNING", "outbox": [] if i % 50 else [{}]}
            for i in range(docs)
        ]
    )
    await coll.update_many({"_id": {"$in": ["job-0007", "job-0008"]}}, {"$set": {"user": "solo"}})
    calls = [
        coll.find({"state": "WAITING"}).to_list(),
        coll.find({"state": {"$eq": "WAITING"}, "version": 0}).sort("at", 1).limit(3).to_list(),
        coll.find({"state": {"$in": ["WAITING", "GONE"]}}).to_list(),
        coll.find({"$and": [{"version": {"$gte": 0}}, {"state": "WAITING"}]}).to_list(),
        coll.count_documents({"user": "solo"}),
        coll.find({"$or": [{"_id": "job-0001"}, {"user": "solo"}, {"state": "WAITING"}]}).to_list(),
        coll.aggregate([{"$match": {"user": "solo"}}, {"$group": {"_id": None, "n": {"$sum": 1}}}]),
        coll.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).to_list(),  # no index declares it
        coll.find_one_and_update({"state": "WAITING"}, {"$set": {"state": "RUNNING"}}, sort=[("at", -1)]),
        coll.update_many({"state": "WAITING"}, {"$set": {"state": "DONE"}}),
        coll.find({"state": "DONE"}).to_list(),
        coll.delete_many({"user": "solo"}),
    ]
    for call in calls:
        filter_tests.calls = 0
        await call
        assert filter_tests.calls < 20, f"{call}: {filter_tests.calls} filter tests over {docs} documents"
    assert len(await coll.find({"state": "DONE"}).to_list()) == 4
    filter_tests.calls = 0
    assert await coll.count_documents({"version": 0, "seq": None}) == docs - 2  # no index: a scan
    assert filter_tests.calls >= docs - 2


VALUES: list[Any] = [
    1, 1.0, True, 0, False, 2.5, "1", "a", None, T0.replace(tzinfo=None), T0, T0 + timedelta(microseconds=1),
    ObjectId("65a000000000000000000001"), "65a000000000000000000001", ["65a000000000000000000001"], [1, "a"],
    [None], [], [[1]], {"x": 1},
    float("nan"), Decimal128("1"),
]  # fmt: skip
MISSING = object()


def random_doc(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": i}
    shapes: list[Any] = [
        MISSING,
        {"b": rng.choice(VALUES)},
        [{"b": rng.choice(VALUES)}, {"c": 1}, 5],
        rng.choice(VALUES),
    ]
    for field, value in (
        ("v", rng.choice([*VALUES, MISSING])),
        ("a", rng.choice(shapes)),
        ("arr", rng.choice([MISSING, [], [rng.choice(VALUES)], {"0": 1}])),
    ):
        if value is not MISSING:
            doc[field] = value
    return doc


def probes(rng: random.Random) -> list[dict[str, Any]]:
    q = rng.choice(VALUES)
    return [
        {"v": q},
        {"v": {"$eq": q}},
        {"v": {"$in": [q, rng.choice(VALUES)]}},
        {"v": {"$in": [q, None]}, "a.b": {"$exists": True}},
        {"a.b": q},
        {"$and": [{"a.b": {"$eq": q}}, {"v": {"$ne": 2.5}}]},
        {"arr.0": {"$exists": True}},
        {"v": {"$exists": True}},
        {"v": None},
        {"$or": [{"_id": rng.randrange(50)}, {"a.b": q}, {"arr.0": {"$exists": True}}]},
        {"$or": [{"v": q}, {"n": 1}]},  # a branch no index narrows: a scan
    ]


async def mutate(rng: random.Random, coll: Any, n: int) -> None:
    target = rng.randrange(n)
    update = rng.choice(
        [
            {"$set": {"v": rng.choice(VALUES)}},
            {"$unset": {"v": ""}},
            {"$set": {"a.b": rng.choice(VALUES)}},
            {"$set": {"a": [{"b": rng.choice(VALUES)}]}},
            {"$push": {"arr": rng.choice(VALUES)}},
            {"$pop": {"arr": -1}},
            {"$inc": {"n": 1}},
        ]
    )
    op = rng.randrange(10)
    if op == 0:
        await coll.delete_one({"_id": target})
    elif op == 1:
        await coll.replace_one({"_id": target}, random_doc(rng, target), upsert=True)
    elif op == 2:
        await coll.update_many({"v": rng.choice(VALUES[:9])}, {"$set": {"v": rng.choice(VALUES)}})
    else:
        # mongomock refuses some: $set of a.b in an array, $pop of a missing field, $push onto a document
        with contextlib.suppress(WriteError, ValueError, KeyError, TypeError, AttributeError):
            await coll.update_one({"_id": target}, update, upsert=True)


@pytest.mark.parametrize("seed", range(6))
async def test_indexed_answers_equal_a_scans(seed: int) -> None:
    """After every write, each indexed filter picks the very documents, in the very order, that testing
    every stored document picks."""
    rng = random.Random(seed)
    coll = memory_client()["memory_index_test"][f"docs{seed}"]
    await coll.create_index([("v", 1)])
    await coll.create_index([("a.b", 1), ("v", -1)])
    n = 40
    await coll.insert_many([random_doc(rng, i) for i in range(n)])
    for step in range(80):
        await mutate(rng, coll, n + 5)
        if step == 60:
            await coll.drop_index("v_1")  # no longer declared: a scan again
        for probe in probes(rng):
            indexed = [doc["_id"] for doc in coll._iter_documents(probe)]
            stored = list(coll._store._documents.values())
            assert indexed == [doc["_id"] for doc in stored if filter_applies(probe, doc)], (step, probe)
    assert set(coll._store.__dict__["_cirasa_indexes"].paths) == {"a.b", "arr.0"}
    await coll.drop()
    await coll.insert_one({"_id": 1, "a": {"b": 1.0}})
    assert await coll.count_documents({"a.b": 1}) == 1  # the indexes went with the collection: a scan
    await coll.create_index("a.b")
    assert await coll.count_documents({"a.b": True}) == 1  # 1.0 == True, as mongomock compares
    assert set(coll._store.__dict__["_cirasa_indexes"].paths) == {"a.b"}


async def indexed_script(c: Any) -> list[Any]:
    """Writes that move documents between index keys, and the queries the services' loops make."""
    await c.create_index([("state", 1), ("created_at", 1)])
    await c.create_index([("offers.offer_id", 1)])
    docs = [
        {
            "_id": f"p{i}",
            "state": ["WAITING", "OFFERED", "DONE"][i % 3],
            "created_at": T0 - timedelta(minutes=i % 7),
            "offers": [{"offer_id": f"o{i}-{k}", "state": "OFFERED", "expires_at": T0} for k in range(i % 3)],
            "outbox": [] if i % 4 else [{"event_id": f"e{i}"}],
            "n": i % 5,
        }
        for i in range(30)
    ]
    out: list[Any] = [summary(await c.insert_many(docs))]
    elem = {"$elemMatch": {"state": "OFFERED", "expires_at": {"$lte": T0}}}
    calls = [
        c.find({"state": "WAITING"}).sort("created_at").limit(4).to_list(),
        c.find({"state": "OFFERED", "offers": elem}, {"_id": 1}).to_list(),
        c.find({"offers.offer_id": "o4-1"}).to_list(),
        c.find_one({"$or": [{"_id": "p3"}, {"offers.offer_id": "o4-1"}]}, sort=[("created_at", 1)]),
        c.find({"offers.offer_id": None}, {"_id": 1}).to_list(),  # no offers: filed as missing
        c.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).to_list(),
        c.update_many({"state": "WAITING", "n": {"$lt": 2}}, {"$set": {"state": "OFFERED", "n": 1.0}}),
        c.update_one({"_id": "p1"}, {"$unset": {"state": ""}, "$push": {"outbox": {"event_id": "x"}}}),
        c.update_one({"_id": "p4"}, {"$pull": {"outbox": {"event_id": "e4"}}, "$set": {"offers": []}}),
        c.replace_one({"_id": "p5"}, {"state": ["WAITING", "DONE"], "created_at": T0}),
        c.delete_many({"state": "DONE", "n": 3}),
        c.find({"state": {"$in": ["WAITING", None]}}, {"_id": 1, "state": 1}).to_list(),
        c.find({"state": "OFFERED", "n": 1}, {"_id": 1, "n": 1}).to_list(),
        c.find({"state": "DONE"}).sort("created_at", -1).to_list(),
        c.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).to_list(),
        c.find({"offers.offer_id": {"$in": ["o7-0", "o8-1", "o4-1"]}}, {"_id": 1}).to_list(),
        c.count_documents({"state": "OFFERED"}),
        c.find_one_and_delete({"state": "WAITING"}, sort=[("created_at", 1)]),
        c.drop_index("state_1_created_at_1"),
        c.find({"state": "WAITING"}, {"_id": 1}).to_list(),
    ]
    for call in calls:
        out.append(summary(await call))
    cursor = await c.aggregate(
        [{"$match": {"state": "OFFERED"}}, {"$group": {"_id": "$n", "k": {"$sum": 1}}}]
    )
    out.append(sorted(map(str, await cursor.to_list())))
    return out


async def test_indexed_answers_are_plain_mongomocks() -> None:
    memory_client()
    with plain_mongomock():
        expected = await indexed_script(AsyncMongoMockClient(tz_aware=True)["plain"]["proposals"])
    assert await indexed_script(memory_client()["adapted"]["proposals"]) == expected
