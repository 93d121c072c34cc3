"""Secondary indexes of the in-memory double (``cirasa.common.store.memory``).

mongomock answers every filter by testing every document of the collection. Here a filter that pins a
field a collection has an index on (the index's first key: a top-level field or a dotted path) to a
value or a few (``field: v``, ``{"$eq": v}``, ``{"$in": [...]}``, at the filter's top level or inside
a top-level ``$and``), or that asks whether such a path, or an element of an array
(``"outbox.0": {"$exists": True}``, the outbox sweep's), exists, takes its candidates from a map
value -> documents, and mongomock's ``filter_applies`` still decides on each one: an index only
narrows the candidates, so an answer is the one a scan gives, in the same order. A conjunction takes
its narrowest clause; an ``$or`` whose every branch is narrowed so (by an index or by ``_id``), the
union of its branches' candidates.

What a document is filed under, for a path: the values mongomock's matcher itself sees there
(``iter_key_candidates``), every element of an array among them (a multikey index); ``MISSING`` where
the path resolves to nothing (a lookup of ``None`` takes those too, as a server's null does);
``PRESENT`` where it resolves to anything (``$exists``). Values that compare and hash alike share a
key (1, 1.0 and True); datetimes are keyed naive UTC to the millisecond, tz-aware or not (the filter
still tells them apart). A value of a type not keyed here (Decimal128, ...) makes its document a
candidate of every lookup (``ANY``); a document or an array inside an array equals no scalar, so it
is filed under nothing; and a lookup of anything but a scalar (a document, an array, a regex, a NaN)
scans.

The maps hang on mongomock's ``CollectionStore``: built by the first query that can use them (one
pass), then kept in step by ``__setitem__`` and ``__delitem__``, through which every write goes (the
copy-on-write writes store a document whole). They are dropped when the store's documents are replaced
(``drop``), when their index is dropped, and all of them when ``plain_mongomock()`` may have written
past them (``invalidate``). A malformed filter may go unnoticed when no document is a candidate (a
scan, too, raises only when it tests a document).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mongomock import helpers
from mongomock.filtering import iter_key_candidates
from sentinels import NOTHING

Doc = dict[str, Any]
Keys = tuple[Any, ...]
_ATTR = "_cirasa_indexes"
_KEYED = frozenset({str, int, bool, bytes, helpers.ObjectId})
_ELEMENT = re.compile(r"\.\d+$")  # "outbox.0": an array's element, indexed as soon as a filter asks
_generation = 0  # bumped by invalidate(): older maps are stale


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING = _Marker("MISSING")  # the path resolves to nothing
PRESENT = _Marker("PRESENT")  # the path resolves to something
ANY = _Marker("ANY")  # a value no key stands for: a candidate of every equality
_UNKEYED = _Marker("UNKEYED")  # a document or an array: no scalar equals it


def invalidate() -> None:
    """Forget every map (rebuilt when next needed): the stores may have changed behind them."""
    global _generation
    _generation += 1


def store_setitem(self: Any, key: Any, value: Doc) -> None:
    """``CollectionStore.__setitem__``, keeping the maps in step."""
    with self._rwlock.writer():
        self._documents[key] = value
    indexes = _current(self)
    if indexes is not None:
        indexes.put(key, value)


def store_delitem(self: Any, key: Any) -> None:
    """``CollectionStore.__delitem__``, keeping the maps in step."""
    with self._rwlock.writer():
        del self._documents[key]
    indexes = _current(self)
    if indexes is not None:
        indexes.remove(key)


def candidates(store: Any, filter: Any) -> list[Doc] | None:
    """The stored documents ``filter`` may apply to, in the collection's order; None: scan them all."""
    if not isinstance(filter, Mapping) or not _narrows(filter):
        return None
    declared = _declared(store)
    indexes = _current(store)
    if indexes is not None:
        indexes.prune(declared)
    lookup = _Lookup(store, declared, indexes)
    best = lookup.narrowest(filter)
    if best is None:
        return None
    return lookup.ensure().ordered(best[0] if len(best) == 1 else set().union(*best))


class _Lookup:
    """The narrowest candidate sets of a filter: the smallest of its clauses' (a conjunction), the union
    of its ``$or`` branches' when every branch has some."""

    def __init__(self, store: Any, declared: set[str], indexes: StoreIndexes | None) -> None:
        self.store = store
        self.declared = declared
        self.indexes = indexes  # made when a clause first needs a map

    def narrowest(self, filter: Mapping[str, Any]) -> list[set[Any]] | None:
        options: list[list[set[Any]]] = []
        for field, search in filter.items():
            if field == "$and" and isinstance(search, list | tuple):
                options += [found for sub in search if (found := self._branch(sub)) is not None]
            elif field == "$or" and isinstance(search, list | tuple) and search:
                branches = [self._branch(sub) for sub in search]
                if all(found is not None for found in branches):
                    options.append([s for found in branches if found for s in found])
            elif field == "_id":  # a document is stored under its _id: the store's own keys
                docs = self.store._documents
                options += [
                    [{k for k in keys if k in docs and not isinstance(k, _Marker)}]
                    for keys in _operands(search)
                ]
            elif isinstance(field, str) and not field.startswith("$"):
                usable = [keys for keys in _operands(search) if self._usable(field, keys)]
                options += [self._lookup(field, keys) for keys in usable]
        return min(options, key=lambda found: sum(map(len, found))) if options else None

    def _branch(self, sub: Any) -> list[set[Any]] | None:
        return self.narrowest(sub) if isinstance(sub, Mapping) else None

    def _usable(self, path: str, keys: Keys) -> bool:
        return path in self.declared or (keys == (PRESENT,) and _ELEMENT.search(path) is not None)

    def ensure(self) -> StoreIndexes:
        if self.indexes is None:
            self.indexes = self.store.__dict__[_ATTR] = StoreIndexes(self.store._documents)
        return self.indexes

    def _lookup(self, path: str, keys: Keys) -> list[set[Any]]:
        return self.ensure().path(path, auto=path not in self.declared).lookup(keys)


class PathIndex:
    """value -> keys of the documents holding it at ``path``, and what each document is filed under."""

    __slots__ = ("auto", "buckets", "entries", "path")

    def __init__(self, path: str, auto: bool) -> None:
        self.path = path
        self.auto = auto  # asked for by a filter ("x.0" $exists), not declared by an index
        self.buckets: dict[Any, set[Any]] = {}
        self.entries: dict[Any, Keys] = {}

    def put(self, key: Any, doc: Doc) -> None:
        entry = _entry(self.path, doc)
        old = self.entries.get(key)
        if old == entry:
            return
        if old is not None:
            self._unfile(key, old)
        self.entries[key] = entry
        for value in entry:
            self.buckets.setdefault(value, set()).add(key)

    def remove(self, key: Any) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self._unfile(key, old)

    def lookup(self, keys: Keys) -> list[set[Any]]:
        return [self.buckets[k] for k in keys if k in self.buckets]

    def _unfile(self, key: Any, entry: Keys) -> None:
        for value in entry:
            bucket = self.buckets.get(value)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self.buckets[value]


class StoreIndexes:
    """The maps of one collection's documents (the ``OrderedDict`` of a ``CollectionStore``), and the
    position of each document in it, so that candidates come in the order a scan meets them."""

    __slots__ = ("documents", "generation", "next", "order", "paths")

    def __init__(self, documents: Mapping[Any, Doc]) -> None:
        self.documents = documents
        self.generation = _generation
        self.order: dict[Any, int] = {key: n for n, key in enumerate(documents)}
        self.next = len(self.order)
        self.paths: dict[str, PathIndex] = {}

    def put(self, key: Any, doc: Doc) -> None:
        if key not in self.order:  # a new document goes last; a replaced one keeps its place
            self.order[key] = self.next
            self.next += 1
        for index in self.paths.values():
            index.put(key, doc)

    def remove(self, key: Any) -> None:
        self.order.pop(key, None)
        for index in self.paths.values():
            index.remove(key)

    def path(self, path: str, auto: bool) -> PathIndex:
        index = self.paths.get(path)
        if index is None:
            index = self.paths[path] = PathIndex(path, auto)
            for key, doc in self.documents.items():
                index.put(key, doc)
        return index

    def prune(self, declared: set[str]) -> None:
        """Stop maintaining the maps of dropped indexes."""
        for path in [p for p, index in self.paths.items() if not index.auto and p not in declared]:
            del self.paths[path]

    def ordered(self, keys: set[Any]) -> list[Doc]:
        docs = self.documents
        if len(keys) * 16 >= len(docs):  # many: one pass in order is cheaper than sorting them
            return [doc for key, doc in docs.items() if key in keys]
        return [docs[key] for key in sorted(keys, key=self.order.__getitem__)]


def _current(store: Any) -> StoreIndexes | None:
    indexes: StoreIndexes | None = store.__dict__.get(_ATTR)
    if indexes is None or (indexes.generation == _generation and indexes.documents is store._documents):
        return indexes
    del store.__dict__[_ATTR]  # dropped, or written to behind our back
    return None


def _declared(store: Any) -> set[str]:
    """The first key of each index on the collection (``_id`` aside: memory.py looks those up)."""
    paths = set()
    for spec in store.indexes.values():
        keys = list(spec.get("key") or ())
        first = keys[0] if keys else None
        path = first[0] if isinstance(first, tuple | list) else first
        if isinstance(path, str) and path != "_id" and not path.startswith("$"):
            paths.add(path)
    return paths


# --- what a document is filed under, what a filter looks up ---------------------------------------


def _key(value: Any) -> Any:
    """The key of a value in a map, ``ANY`` for a type not keyed, ``_UNKEYED`` for containers."""
    kind = type(value)
    if kind in _KEYED or value is None:
        return value
    if kind is float or isinstance(value, float):
        return ANY if value != value else value  # NaN: mongomock's `in` matches it by identity
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is not None:
            value = (value - offset).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict | list | tuple):
        return _UNKEYED
    if isinstance(value, str | int | bytes | helpers.ObjectId):  # enums and the like: hash as their base
        return value
    return ANY


def _entry(path: str, doc: Doc) -> Keys:
    """What a document is filed under at ``path``."""
    keys: dict[Any, None] = {}
    for value in iter_key_candidates(path, doc):
        if value is NOTHING:
            keys[MISSING] = None
            continue
        keys[PRESENT] = None
        for item in value if isinstance(value, list | tuple) else (value,):
            key = _key(item)
            if key is not _UNKEYED:
                keys[key] = None
    return tuple(keys)


def _keys(value: Any) -> Keys | None:
    """The keys whose documents may equal ``value`` at a path, or None when no key stands for it."""
    if value is None:
        return (None, MISSING, ANY)
    key = _key(value)
    if key is ANY or key is _UNKEYED:
        return None
    if isinstance(value, helpers.ObjectId):  # mongomock matches an array holding its string too
        return (key, str(value), ANY)
    return (key, ANY)


def _narrows(filter: Mapping[str, Any]) -> bool:
    """Whether a filter has a clause an index may answer (before anything is looked up)."""
    for field, search in filter.items():
        if field in ("$and", "$or") and isinstance(search, list | tuple):
            if any(isinstance(sub, Mapping) and _narrows(sub) for sub in search):
                return True
        elif isinstance(field, str) and not field.startswith("$") and _operands(search):
            return True
    return False


def _operands(search: Any) -> list[Keys]:
    """For a field's condition: tuples of keys, each of which a matching document is filed under one of
    (``field: v``, ``$eq``, ``$in``, ``$exists``)."""
    if not isinstance(search, Mapping):
        keys = _keys(search)
        return [] if keys is None else [keys]
    if not search or not all(isinstance(op, str) and op.startswith("$") for op in search):
        return []  # a whole document to equal
    found: list[Keys | None] = []
    if "$eq" in search:
        found.append(_keys(search["$eq"]))
    values = search.get("$in")
    if isinstance(values, list | tuple):
        each = [_keys(v) for v in values]
        found.append(None if None in each else tuple(k for keys in each if keys for k in keys))
    if search.get("$exists"):
        found.append((PRESENT,))
    return [keys for keys in found if keys is not None]
