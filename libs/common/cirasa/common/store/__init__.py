"""Thin store layer: one MongoDB database per service, through PyMongo's async API.

With ``CIRASA_MONGODB_URL`` set, services talk to a real server (``AsyncMongoClient``). Without it
they get the in-memory double (``cirasa.common.store.memory``), which answers the same calls. Code
above this module only uses plain collection operations (insert, find, conditional updates,
indexes) so that both behave alike; no sessions, transactions or change streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from cirasa.common.events import utcnow
from cirasa.common.settings import Settings

Document = dict[str, Any]
# a real server's, or the in-memory double's (cirasa.common.store.memory), which answers the same calls
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]


def open_client(settings: Settings) -> AsyncMongoClient[Document]:
    """A client of the configured server; without ``mongodb_url``, the in-memory double."""
    if settings.mongodb_url:
        return AsyncMongoClient(settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000)
    from cirasa.common.store.memory import memory_client

    client: AsyncMongoClient[Document] = memory_client()
    return client


def database_name(settings: Settings, service: str) -> str:
    return f"{settings.db_prefix}_{service}"


async def ping(db: Database) -> bool:
    try:
        await db.command("ping")
    except Exception:
        return False
    return True


async def ensure_indexes(db: Database, indexes: Mapping[str, Iterable[IndexModel]]) -> None:
    """Create the indexes a service declares, at start-up; idempotent."""
    for name, models in indexes.items():
        for model in models:
            spec = dict(model.document)
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
