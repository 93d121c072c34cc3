"""The in-memory double of a MongoDB server, and every adaptation it needs to behave like one.

``pymongo_async_mock`` gives mongomock PyMongo's async API. Two things a server has and mongomock
lacks are added here, so no production code path has to know it talks to a double:

* a lookup by ``_id`` that does not scan the collection (mongomock tests every document against
  every filter, so a primary-key lookup costs O(n) and the double slows down as a run goes on);
* no TTL indexes (mongomock would rescan the whole collection for expired documents on every
  access, and nothing in memory lives as long as a TTL anyway);
* interleaving: every call yields to the event loop before it runs, as a call to a server does, so
  two coroutines can interleave between a read and a conditional write (a compare-and-swap that
  forgot its condition loses updates here too, as it would against a server). Each call itself
  stays atomic, like a single-document update on a server.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

_client: Any = None


def memory_client() -> Any:
    """The process-wide in-memory client: like a server, it outlives a service's restart."""
    global _client
    if _client is None:
        from pymongo_async_mock import AsyncMongoMockClient

        _adapt_mongomock()
        _interleave()
        _client = AsyncMongoMockClient(tz_aware=True)
    return _client


def reset_memory_store() -> None:
    """Forget every in-memory database (tests)."""
    global _client
    _client = None


def _adapt_mongomock() -> None:
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

    if getattr(Collection, "_cirasa_adapted", False):
        return
    scan = Collection._iter_documents
    create_index = Collection.create_index

    def iter_documents(self: Any, filter: Any) -> Any:
        # the same filter function still decides; only the candidates are narrowed to one document
        key = filter.get("_id") if isinstance(filter, dict) else None
        if isinstance(key, str | int) and not isinstance(key, bool):
            try:
                doc = self._store[key]
            except KeyError:
                return iter(())
            return iter([doc] if filter_applies(filter, doc) else [])
        return scan(self, filter)

    def create_index_without_ttl(self: Any, key_or_list: Any, **kwargs: Any) -> Any:
        kwargs.pop("expireAfterSeconds", None)
        return create_index(self, key_or_list, **kwargs)

    setattr(Collection, "_iter_documents", iter_documents)  # noqa: B010
    setattr(Collection, "create_index", create_index_without_ttl)  # noqa: B010
    setattr(Collection, "_cirasa_adapted", True)  # noqa: B010


COLLECTION_CALLS = (
    "bulk_write", "count_documents", "create_index", "delete_many", "delete_one", "distinct",
    "estimated_document_count", "find_one", "find_one_and_delete", "find_one_and_replace",
    "find_one_and_update", "insert_many", "insert_one", "replace_one", "update_many", "update_one",
    "aggregate",
)  # fmt: skip
CURSOR_CALLS = ("next", "__anext__", "to_list")


def _yielding(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # a server round trip: others may run meanwhile
        return await call(*args, **kwargs)

    wrapper.__dict__["_cirasa_yielding"] = True
    return wrapper


def _interleave() -> None:
    import pymongo_async_mock as double

    for cls, names in (
        (double.AsyncMongoMockCollection, COLLECTION_CALLS),
        (double.AsyncCursor, CURSOR_CALLS),
        (double.AsyncCommandCursor, CURSOR_CALLS),
    ):
        for name in names:
            call = getattr(cls, name)
            if not getattr(call, "_cirasa_yielding", False):
                setattr(cls, name, _yielding(call))
