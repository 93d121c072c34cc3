"""The in-memory double keeps what it promises while it copies little and never scans for an ``_id``.

Each guarantee has a test that fails without it: what a caller gets or hands in stays its own (the
stored documents are shared copy-on-write), a call by ``_id`` tests a handful of documents, not the
collection, two coroutines interleave between a read and a conditional write, and every answer is
the one plain mongomock gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongomock import filtering
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
