"""Stored documents as pydantic models, and a collection that reads and writes them.

Each service declares one model per collection it owns. Reads are validated into the model at the
store boundary; inserts are made from a model. Updates stay MongoDB update documents (conditional
``$set``/``$push``, compare-and-swap), since they are what makes a write atomic and idempotent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ReturnDocument

from cirasa.common.store import Collection, Document


class StoredDocument(BaseModel):
    """Base of every stored document: ``_id`` is ``id``; fields a newer version added are ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: Any = Field(alias="_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        return cls.model_validate(doc)

    def to_doc(self) -> Document:
        """The document as stored (``_id`` under its own name; Python values, not JSON strings)."""
        return self.model_dump(by_alias=True)


D = TypeVar("D", bound=StoredDocument)
Sort = Sequence[tuple[str, int]]


class Documents(Generic[D]):
    """One collection whose documents are ``model``; ``raw`` is there for aggregates and indexes."""

    def __init__(self, collection: Collection, model: type[D]) -> None:
        self.raw = collection
        self.model = model

    async def get(self, doc_id: Any) -> D | None:
        doc = await self.raw.find_one({"_id": doc_id})
        return None if doc is None else self.model.from_doc(doc)

    async def find_one(self, query: Mapping[str, Any], sort: Sort | None = None) -> D | None:
        doc = await self.raw.find_one(dict(query), sort=list(sort) if sort else None)
        return None if doc is None else self.model.from_doc(doc)

    async def find(
        self, query: Mapping[str, Any], sort: Sort | None = None, limit: int = 0
    ) -> AsyncIterator[D]:
        cursor = self.raw.find(dict(query))
        if sort:
            cursor = cursor.sort(list(sort))
        if limit:
            cursor = cursor.limit(limit)
        async for doc in cursor:
            yield self.model.from_doc(doc)

    async def insert(self, doc: D) -> None:
        await self.raw.insert_one(doc.to_doc())

    async def update(
        self, query: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = False
    ) -> bool:
        """Apply ``update`` to the one document ``query`` matches; True when it changed or made one."""
        result = await self.raw.update_one(dict(query), dict(update), upsert=upsert)
        return bool(result.modified_count == 1 or result.upserted_id is not None)

    async def update_and_get(
        self, query: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = False
    ) -> D | None:
        """Apply ``update`` atomically and return the document as it is afterwards (None: no match)."""
        doc = await self.raw.find_one_and_update(
            dict(query), dict(update), upsert=upsert, return_document=ReturnDocument.AFTER
        )
        return None if doc is None else self.model.from_doc(doc)

    async def count(self, query: Mapping[str, Any]) -> int:
        return int(await self.raw.count_documents(dict(query)))
