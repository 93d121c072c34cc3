"""Thin store layer: one MongoDB database per service, through PyMongo's async API.

With ``CIRASA_MONGODB_URL`` set, services talk to a real server (``AsyncMongoClient``). Without it
they get ``pymongo_async_mock``'s in-memory double, which answers the same collection calls. Code
above this module only uses plain collection operations (insert, find, conditional updates,
indexes) so that both behave alike; no sessions, transactions or change streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.common.events import utcnow
from cirasa.common.settings import Settings

Document = dict[str, Any]
Database = Any  # pymongo AsyncDatabase or its in-memory double
Collection = Any

_memory_client: Any = None


def memory_client() -> Any:
    """The process-wide in-memory client: like a server, it outlives a service's restart."""
    global _memory_client
    if _memory_client is None:
        from pymongo_async_mock import AsyncMongoMockClient

        _use_id_index()
        _memory_client = AsyncMongoMockClient(tz_aware=True)
    return _memory_client


def _use_id_index() -> None:
    """Give the double what every server has: a lookup by ``_id`` that does not scan the collection.

    mongomock tests every document against every filter, so a lookup by primary key costs O(n) and
    the double slows down as a run goes on. The same filter function still decides; only the
    candidates are narrowed to the one document with that ``_id``.
    """
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

    if getattr(Collection, "_cirasa_id_index", False):
        return
    scan = Collection._iter_documents

    def iter_documents(self: Any, filter: Any) -> Any:
        key = filter.get("_id") if isinstance(filter, dict) else None
        if isinstance(key, str | int) and not isinstance(key, bool):
            try:
                doc = self._store[key]
            except KeyError:
                return iter(())
            return iter([doc] if filter_applies(filter, doc) else [])
        return scan(self, filter)

    setattr(Collection, "_iter_documents", iter_documents)  # noqa: B010
    setattr(Collection, "_cirasa_id_index", True)  # noqa: B010


def reset_memory_store() -> None:
    """Forget every in-memory database (tests)."""
    global _memory_client
    _memory_client = None


def open_client(settings: Settings) -> Any:
    if settings.mongodb_url:
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000)
    return memory_client()


def database_name(settings: Settings, service: str) -> str:
    return f"{settings.db_prefix}_{service}"


async def ping(db: Database) -> bool:
    try:
        await db.command("ping")
    except Exception:
        return False
    return True


async def ensure_indexes(db: Database, indexes: Mapping[str, Iterable[IndexModel]]) -> None:
    """Create the indexes a service declares, at start-up; idempotent.

    The in-memory double gets no TTL indexes: it would rescan the whole collection for expired
    documents on every access, and nothing in memory lives as long as a TTL anyway.
    """
    from pymongo.asynchronous.database import AsyncDatabase

    in_memory = type(db) is not AsyncDatabase  # the double's __class__ claims to be one
    for name, models in indexes.items():
        for model in models:
            spec = dict(model.document)
            if in_memory:
                spec.pop("expireAfterSeconds", None)
            await db[name].create_index(list(spec.pop("key").items()), **spec)


class Inbox:
    """Remembers which events a service queue has applied, so a redelivery has no second effect.

    The handlers are idempotent by themselves (conditional writes, unique keys); the inbox makes
    the common case (a duplicate arriving after the ack was lost) cheap and visible in metrics.
    """

    COLLECTION = "inbox"

    def __init__(self, db: Database, retention: timedelta = timedelta(days=7)) -> None:
        self._coll = db[self.COLLECTION]
        self._retention = retention

    @staticmethod
    def indexes(retention: timedelta = timedelta(days=7)) -> list[IndexModel]:
        return [IndexModel([("seen_at", ASCENDING)], expireAfterSeconds=int(retention.total_seconds()))]

    async def seen(self, queue: str, event_id: str) -> bool:
        return await self._coll.find_one({"_id": f"{queue}:{event_id}"}, {"_id": 1}) is not None

    async def mark(self, queue: str, event_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._coll.insert_one({"_id": f"{queue}:{event_id}", "seen_at": utcnow()})
