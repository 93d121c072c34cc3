"""The in-memory double of a MongoDB server, and every adaptation it needs to behave like one.

``pymongo_async_mock`` gives mongomock PyMongo's async API. Two things a server has and mongomock
lacks are added here, so no production code path has to know it talks to a double:

* a lookup by ``_id`` that does not scan the collection (mongomock tests every document against
  every filter, so a primary-key lookup costs O(n) and the double slows down as a run goes on);
* no TTL indexes (mongomock would rescan the whole collection for expired documents on every
  access, and nothing in memory lives as long as a TTL anyway).
"""

from __future__ import annotations

from typing import Any

_client: Any = None


def memory_client() -> Any:
    """The process-wide in-memory client: like a server, it outlives a service's restart."""
    global _client
    if _client is None:
        from pymongo_async_mock import AsyncMongoMockClient

        _adapt_mongomock()
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
