"""The in-memory double of a MongoDB server, and every adaptation it needs to behave like one.

``pymongo_async_mock`` gives mongomock PyMongo's async API. What a server has and mongomock lacks is
added here, so no production code path has to know it talks to a double:

* a call by ``_id`` (``{"_id": x, ...}``, ``{"_id": {"$in": [...]}}``) does not scan the collection:
  mongomock tests every document against every filter, so a primary-key call cost O(n) and the double
  slowed down as a run went on. The filter still decides; only the candidates are narrowed;
* secondary indexes (``memory_index``): a filter pinning the first key of one of the collection's
  indexes to a value or a few (``field: v``, ``$eq``, ``$in``, also inside a top-level ``$and``, or
  in every branch of an ``$or``), or asking whether an array has an element (``"outbox.0":
  {"$exists": True}``), tests only the documents filed under those values, as a server answers it
  from its index. Same answers, same order: the filter decides on each candidate;
* copy-on-write documents instead of deep copies: a stored document is never changed in place. An
  update builds the new version from a shallow copy that copies only the containers on the paths it
  changes (the rest is shared with the old version), and stores it whole, so a failed update leaves
  nothing behind. A read copies once, after the projection, and makes its datetimes tz-aware in the
  same pass (mongomock copied every matching document twice, then a find_one kept the first). What a
  caller gets or gives stays its own: mutating it never changes what is stored;
* no TTL indexes (mongomock would rescan the whole collection for expired documents on every
  access, and nothing in memory lives as long as a TTL anyway), so a lookup by key is one dict
  lookup; and what mongomock recomputed on every write, though it never changes in a process (the
  server's version, PyMongo's version compared with a parsed constant), is computed once;
* interleaving: every call yields to the event loop before it runs, as a call to a server does, so
  two coroutines can interleave between a read and a conditional write (a compare-and-swap that
  forgot its condition loses updates here too, as it would against a server). Each call itself
  stays atomic, like a single-document update on a server.

``plain_mongomock()`` undoes the adaptations for a while (the bench's baseline, the tests' controls).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import itertools
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mongomock import aggregate, collection, helpers
from mongomock import store as mongomock_store
from mongomock.filtering import filter_applies, resolve_sort_key

from cirasa.common.store.memory_index import candidates, invalidate, store_delitem, store_setitem

_client: Any = None
Doc = dict[str, Any]
# (id of the owner, name, is a mapping item) -> (owner, what mongomock had there)
_ORIGINALS: dict[tuple[int, str, bool], tuple[Any, Any]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None), bytes})
_KEYS = (str, int, helpers.ObjectId)  # _id types a lookup can use as they are stored (bool aside)


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


@contextlib.contextmanager
def plain_mongomock() -> Iterator[None]:
    """mongomock as shipped (interleaving aside) inside the block. Use a client made inside it, and
    only there: pymongo_async_mock binds some methods of a collection when it first wraps it."""
    _adapt_mongomock()
    adapted = {where: _get(owner, where[1], where[2]) for where, (owner, _) in _ORIGINALS.items()}
    for (_, name, item), (owner, original) in _ORIGINALS.items():
        _set(owner, name, item, original)
    invalidate()
    try:
        yield
    finally:
        for (_, name, item), (owner, _) in _ORIGINALS.items():
            _set(owner, name, item, adapted[(id(owner), name, item)])
        invalidate()  # writes in the block went past the secondary indexes


def _get(owner: Any, name: str, item: bool) -> Any:
    return owner[name] if item else getattr(owner, name)


def _set(owner: Any, name: str, item: bool, value: Any) -> None:
    if item:
        owner[name] = value
    else:
        setattr(owner, name, value)


def _patch(owner: Any, name: str, value: Any, *, item: bool = False) -> None:
    _ORIGINALS.setdefault((id(owner), name, item), (owner, _get(owner, name, item)))
    _set(owner, name, item, value)


def _original(owner: Any, name: str) -> Any:
    """What mongomock has under ``name`` before the adaptations (the scan, the helper we speed up)."""
    return _ORIGINALS[(id(owner), name, False)][1]


def _adapt_mongomock() -> None:
    cls = collection.Collection
    if getattr(cls, "_cirasa_adapted", False):
        return
    fast_copy = types.SimpleNamespace(copy=copy.copy, deepcopy=_tree_copy)
    _patch(helpers, "patch_datetime_awareness_in_document", _stored)
    _patch(collection, "copy", fast_copy)  # $pull's scratch copy, replacements: no copy.deepcopy
    _patch(aggregate, "copy", fast_copy)
    _patch(collection, "_set_updater", _set_updater)
    _patch(collection._updaters, "$set", _set_updater, item=True)
    _patch(mongomock_store.CollectionStore, "__setitem__", store_setitem)  # keeps the indexes in step
    _patch(mongomock_store.CollectionStore, "__delitem__", store_delitem)
    _patch(mongomock_store.CollectionStore, "__contains__", _store_contains)
    _patch(mongomock_store.CollectionStore, "__getitem__", _store_getitem)
    _patch(collection, "version", types.SimpleNamespace(parse=functools.cache(collection.version.parse)))
    for name, method in (
        ("_iter_documents", _iter_documents),
        ("create_index", _create_index_without_ttl),
        ("_get_dataset", _get_dataset),
        ("find_one", _find_one),
        ("_update", _update),
        ("_find_and_modify", _find_and_modify),
        ("_delete", _delete),
        ("aggregate", _aggregate),
    ):
        _patch(cls, name, method)
    _patch(collection.Cursor, "_compute_results", _compute_results)
    setattr(cls, "_cirasa_adapted", True)  # noqa: B010


def _store_contains(self: Any, key: Any) -> bool:
    """``CollectionStore.__contains__`` without its expiry scan (no TTL here) and its reader lock (a
    dict lookup is atomic, and the double is used from one event loop)."""
    return key in self._documents


def _store_getitem(self: Any, key: Any) -> Doc:
    found: Doc = self._documents[key]
    return found


@functools.cache
def _before_5(client_version: str) -> bool:
    """Whether a server of this version refuses an empty update operator (mongomock asked the client
    for its server info, a parse of the version string, on every update)."""
    return [int(part) for part in client_version.split(".")[:1]] < [5]


# --- copies -------------------------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """mongomock's ``patch_datetime_awareness_in_document`` (a private copy of what a caller hands
    in, datetimes naive UTC to the millisecond), without its per-value isinstance chain."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _ATOMS else _stored(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _ATOMS else _stored(v) for v in value]
    if kind in _ATOMS:
        return value
    if kind is datetime:
        mongo_us = value.microsecond // 1000 * 1000
        if value.tzinfo is not None and value.tzinfo is not UTC:
            value -= value.utcoffset()
        return value.replace(tzinfo=None, microsecond=mongo_us)
    return _original(helpers, "patch_datetime_awareness_in_document")(value)


def _tree_copy(value: Any, memo: Any = None) -> Any:
    """``copy.deepcopy`` for documents: containers copied, immutable values shared."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _ATOMS else _tree_copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _ATOMS else _tree_copy(v) for v in value]
    if kind in _ATOMS or kind is datetime:
        return value
    return copy.deepcopy(value, memo)


def _aware(value: Any) -> Any:
    """The caller's copy of a stored value, datetimes tz-aware (what mongomock's cursor did with a
    second copy)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _ATOMS else _aware(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _ATOMS else _aware(v) for v in value]
    if kind is datetime:
        return value.replace(tzinfo=helpers.utc)
    return helpers.make_datetime_timezone_aware_in_document(value)


def _emit(coll: Any, doc: Doc, fields: Any, container: Any = dict) -> Doc:
    """What a read returns for a stored document: projected first, then copied once."""
    shown = _projected(coll, doc, fields, container)
    return _aware(shown) if coll.codec_options.tz_aware else _tree_copy(shown)


def _projected(coll: Any, doc: Doc, fields: Any, container: Any) -> Doc:
    """The projection of a stored document, sharing its values (the caller copies). Shapes the fast
    path does not know (dotted paths, $slice, $elemMatch) go to mongomock, which copies."""
    if not fields:
        return doc
    spec = fields if isinstance(fields, dict) else helpers.fields_list_to_dict(fields)
    keep_id = spec.get("_id", 1)
    shown = {k: v for k, v in spec.items() if k != "_id"}
    simple = all(type(v) in (int, bool) and v in (0, 1) for v in (keep_id, *shown.values()))
    flags = set(shown.values()) if simple else set()
    if not simple or len(flags) > 1 or any("." in k for k in shown):  # or a mix, which mongomock refuses
        return coll._copy_only_fields(doc, dict(spec), container)
    if not shown:
        out = {} if keep_id else {k: v for k, v in doc.items() if k != "_id"}
    elif 1 in flags:
        out = {k: v for k, v in doc.items() if k in shown and k != "_id"}
    else:
        out = {k: v for k, v in doc.items() if k not in shown}
    if not keep_id:
        out.pop("_id", None)
    elif "_id" in doc:
        out["_id"] = doc["_id"]
    return out


# --- reads --------------------------------------------------------------------------------------------


def _is_key(value: Any) -> bool:
    return isinstance(value, _KEYS) and not isinstance(value, bool)


def _keys_of(filter: Any) -> list[Any] | None:
    """The ``_id`` values a filter confines its matches to, or None when it does not."""
    if not isinstance(filter, dict) or "_id" not in filter:
        return None
    key = filter["_id"]
    if _is_key(key):
        return [key]
    if isinstance(key, dict) and len(key) == 1:
        if _is_key(key.get("$eq")):
            return [key["$eq"]]
        keys = key.get("$in")
        if isinstance(keys, list | tuple) and all(_is_key(k) for k in keys):
            unique = list(dict.fromkeys(keys))
            if len({type(k) for k in unique}) == 1:
                unique.sort()  # the order of the _id index, as a server's $in lookup returns them
            return unique
    return None


def _scan(coll: Any, filter: Any) -> Iterator[Doc]:
    """Every document the filter applies to: the O(n) path, never taken for a filter on ``_id`` or
    one a secondary index answers."""
    if not filter:
        return iter(list(coll._store.documents))
    scan: Callable[[Any, Any], Iterator[Doc]] = _original(collection.Collection, "_iter_documents")
    return scan(coll, filter)


def _iter_documents(self: Any, filter: Any) -> Iterator[Doc]:
    keys = _keys_of(filter)
    if keys is None:
        docs = candidates(self._store, filter)  # a secondary index's, in the collection's order
        if docs is None:
            return _scan(self, filter)
        return (doc for doc in docs if filter_applies(filter, doc))  # as lazy as the scan
    stored = self._store._documents  # TTL indexes are off, and one dict lookup needs no lock
    found = [stored[k] for k in keys if k in stored]
    return iter([doc for doc in found if filter_applies(filter, doc)])


def _create_index_without_ttl(self: Any, key_or_list: Any, **kwargs: Any) -> Any:
    kwargs.pop("expireAfterSeconds", None)
    return _original(collection.Collection, "create_index")(self, key_or_list, **kwargs)


def _selected(coll: Any, spec: Any, sort: Any) -> Iterable[Doc]:
    """The stored documents a query returns, in order (mongomock's ``_get_dataset`` before copying)."""
    dataset: Iterable[Doc] = coll._iter_documents(spec)
    if not sort:
        return dataset
    for sort_key, direction in reversed(list(sort.items() if isinstance(sort, dict) else sort)):
        if sort_key == "$natural":
            if direction < 0:
                dataset = list(reversed(list(dataset)))
            continue
        if sort_key.startswith("$"):
            raise NotImplementedError(f"Sorting by {sort_key} is not implemented in mongomock yet")
        dataset = sorted(dataset, key=functools.partial(_sort_key, sort_key), reverse=direction < 0)
    return dataset


def _sort_key(key: str, doc: Doc) -> Any:
    return resolve_sort_key(key, doc)


def _get_dataset(self: Any, spec: Any, sort: Any, fields: Any, as_class: Any) -> Iterator[Doc]:
    for doc in _selected(self, spec, sort):
        yield _emit(self, doc, fields, as_class)


def _compute_results(self: Any, with_limit_and_skip: bool = False) -> list[Doc]:
    """A cursor's documents, copied once (they come tz-aware from ``_get_dataset``), and no more of them
    than skip and limit let through: ``find_one`` copies one document, not every match."""
    window = (self._skip, self._limit) if with_limit_and_skip else None
    cached = self.__dict__.get("_cirasa_results")
    if cached is None or cached[0] is not self._factory or cached[1] != window:
        docs: Iterable[Doc] = self._factory()
        if window is not None:
            stop = self._skip + abs(self._limit) if self._limit else None
            docs = itertools.islice(docs, self._skip, stop)
        cached = self.__dict__["_cirasa_results"] = (self._factory, window, list(docs))
    results: list[Doc] = cached[2]
    return results


def _find_one(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Doc | None:
    if filter is None:
        filter = {}
    if not isinstance(filter, Mapping):
        filter = {"_id": filter}
    return next(self.find(filter, *args, **kwargs).limit(-1), None)


def _aggregate(self: Any, pipeline: Any, session: Any = None, **unused_kwargs: Any) -> Any:
    """A leading ``$match`` picks the documents before they are copied (and still runs as a stage)."""
    first = pipeline[0] if pipeline else None
    match = first.get("$match") if isinstance(first, dict) and len(first) == 1 else None
    docs = list(self.find(match if isinstance(match, dict) else {}))
    return aggregate.process_pipeline(docs, self.database, pipeline, session)


# --- writes -------------------------------------------------------------------------------------------


def _thawed(stored: Doc, update: Any) -> Doc:
    """A copy of a stored document that the update may change in place: the containers on the paths it
    names are copied, everything else is shared with the stored version (which stays as it is)."""
    if isinstance(update, list):  # an aggregation pipeline: its stages may change anything
        thawed: Doc = _tree_copy(stored)
        return thawed
    doc = stored.copy()
    for operator, fields in update.items():
        if operator.startswith("$") and isinstance(fields, Mapping):
            for path in fields:
                _thaw_path(doc, str(path).split("."))
    return doc


def _thaw_path(node: Any, parts: list[str]) -> None:
    for part in parts:
        if isinstance(node, dict):
            key: Any = part
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key = int(part)
        elif isinstance(node, list):  # "$", "$[]" or a field of every element: any element may change
            node[:] = [_tree_copy(item) for item in node]
            return
        else:
            return
        child = node.get(key) if isinstance(node, dict) else node[key]
        if not isinstance(child, dict | list):
            return
        node[key] = child = child.copy()
        node = child


def _set_updater(doc: Any, field_name: str, value: Any) -> None:
    """mongomock's ``$set`` without its deep copy of an array: the value comes from the update, which
    ``_update`` copied already, and stored documents are never changed in place."""
    if isinstance(value, tuple):
        value = list(value)
    if collection.BSON is not None:
        if "\0" in field_name or field_name.startswith("$"):
            raise collection.InvalidDocument(
                "Field name cannot contain the null character and top-level field name cannot start "
                f'with "$" (found: {field_name})'
            )
        collection.BSON.encode({field_name: value}, check_keys=False)
    if isinstance(doc, dict):
        doc[field_name] = value
    elif isinstance(doc, list):
        index = int(field_name)
        if index < 0:
            raise collection.WriteError("Negative index provided")
        doc += [None] * max(0, index - (len(doc) - 1))
        doc[index] = value


def _refuse_unsupported(**options: Any) -> None:
    if options.pop("session", None):
        collection.raise_not_implemented("session", "Mongomock does not handle sessions yet")
    if options.pop("hint", None):
        raise NotImplementedError("The hint argument is valid but not implemented in mongomock yet")
    for name, value in options.items():
        if value:
            collection.raise_not_implemented(name, f"The {name} argument of update is not implemented")


def _update(
    self: Any,
    spec: Any,
    document: Any,
    upsert: bool = False,
    manipulate: bool = False,
    multi: bool = False,
    check_keys: bool = False,
    hint: Any = None,
    session: Any = None,
    collation: Any = None,
    let: Any = None,
    array_filters: Any = None,
    **kwargs: Any,
) -> Doc:
    """mongomock's ``_update``, copy-on-write: each matched document is rebuilt by ``_rewrite``."""
    _refuse_unsupported(hint=hint, session=session, collation=collation, array_filters=array_filters, let=let)
    spec = helpers.patch_datetime_awareness_in_document(spec)
    document = helpers.patch_datetime_awareness_in_document(document)  # the update's own copy
    collection.validate_is_mapping("spec", spec)
    collection.validate_list_or_mapping("document", document)
    if isinstance(document, list):
        collection._validate_document_stages(document)
    elif _before_5(self.database.client._server_version):
        for operator in collection._updaters:
            if not document.get(operator, True):
                raise collection.WriteError(f"'{operator}' is empty. You must specify a field like so: ...")
    matched = modified = 0
    for stored in self._iter_documents(spec):
        matched += 1
        modified += _rewrite(self, stored, spec, document)
        if not multi:
            break
    upserted = None
    if upsert and not matched:
        upserted = _upsert(self, spec, document)
        matched = 1
    return {
        "connectionId": self.database.client._id,
        "err": None,
        "n": matched,
        "nModified": modified,
        "ok": 1,
        "upserted": upserted,
        "updatedExisting": upserted is None and matched > 0,
    }


def _rewrite(coll: Any, stored: Doc, spec: Any, document: Any) -> bool:
    """Apply an update to a stored document: the new version replaces it whole, or nothing happens."""
    doc = _thawed(stored, document)
    if isinstance(document, list):
        coll._apply_update_pipeline(doc, document, None)
    else:
        coll._apply_update_document(doc, spec, document, False)
    if doc == stored:  # shared parts compare by identity: this costs what the update changed
        return False
    if doc.get("_id") != stored.get("_id"):
        raise collection.WriteError(
            "After applying the update, the (immutable) field '_id' was found to have been altered to "
            f"_id: {doc.get('_id')}"
        )
    key = stored["_id"]
    key = helpers.hashdict(key) if isinstance(key, dict) else key
    coll._store[key] = doc
    try:
        coll._ensure_uniques(doc)
    except collection.DuplicateKeyError:
        coll._store[key] = stored
        raise
    return True


def _upsert(coll: Any, spec: Any, document: Any) -> Any:
    if spec.get("_id") is not None:
        _id = spec["_id"]
    elif not isinstance(document, list) and document.get("_id") is not None:
        _id = document["_id"]
    else:
        _id = helpers.ObjectId()
    doc, _ = coll._discard_operators(coll._expand_dots(dict(spec, _id=_id)))
    if isinstance(document, list):
        coll._apply_update_pipeline(doc, document, None)
    else:
        coll._apply_update_document(doc, spec, document, True)
    return coll._insert(doc)


def _find_and_modify(
    self: Any,
    query: Any,
    projection: Any = None,
    update: Any = None,
    upsert: bool = False,
    sort: Any = None,
    return_document: Any = collection.ReturnDocument.BEFORE,
    session: Any = None,
    **kwargs: Any,
) -> Doc | None:
    """mongomock's, without copying the document it finds (it is not changed in place) except what
    it returns; the update's filter keeps the query's conditions, so a positional ``$`` works."""
    _refuse_unsupported(session=session)
    remove = kwargs.get("remove", False)
    if kwargs.get("new", False) and remove:
        raise collection.OperationFailure("remove and returnNew can't co-exist")
    if not (remove or update):
        raise ValueError("Must either update or remove")
    if remove and update:
        raise ValueError("Can't do both update and remove")
    spec = helpers.patch_datetime_awareness_in_document(query)
    old = next(iter(_selected(self, spec, sort)), None)
    if old is None and not upsert:
        return None
    if old is not None:
        query = {**query, "_id": old["_id"]}
    if remove:
        self.delete_one(query)
    else:
        upserted = self._update(query, update, upsert)["upserted"]
        if upserted is not None:
            query = {"_id": upserted}
    if return_document is collection.ReturnDocument.AFTER or kwargs.get("new"):
        found: Doc | None = self.find_one(query, projection)
        return found
    return None if old is None else _emit(self, old, projection)


def _delete(
    self: Any, filter: Any, collation: Any = None, hint: Any = None, multi: bool = False, session: Any = None
) -> Doc:
    """mongomock's, which copied every document it deleted (through ``find``) to learn its ``_id``."""
    _refuse_unsupported(hint=hint, collation=collation, session=session)
    filter = helpers.patch_datetime_awareness_in_document(filter)
    if filter is None:
        filter = {}
    if not isinstance(filter, Mapping):
        filter = {"_id": filter}
    doomed = [doc["_id"] for doc in itertools.islice(self._iter_documents(filter), None if multi else 1)]
    for doc_id in doomed:
        del self._store[helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id]
    return {"connectionId": self.database.client._id, "n": len(doomed), "ok": 1.0, "err": None}


# --- interleaving -------------------------------------------------------------------------------------

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
