"""The in-memory store with faults: a service's database seen through a wrapper whose calls may raise
``AutoReconnect`` (before the call, or after it was applied), or crash the service mid-call.

The wrapper also watches the ``seq`` a consumer stores for a job after each of its writes, so the
invariants can tell whether a lower ``seq`` was ever applied after a higher one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pymongo.errors import AutoReconnect

from cirasa.cli.sim.faults import FaultPlan

WRITES = frozenset(
    {"update_one", "update_many", "find_one_and_update", "insert_one", "replace_one", "bulk_write"}
)
# (service, collection) -> the field that holds a job's seq there, and the field naming the job
SEQ_FIELDS: dict[tuple[str, str], tuple[str, str]] = {
    ("gateway", "jobs"): ("seq", "_id"),
    ("gateway", "sessions"): ("job_seq", "job_id"),
    ("accounting", "jobs"): ("seq", "_id"),
    ("monitor", "jobs"): ("seq", "_id"),
}
Crash = Callable[[str], bool]


class StoreWorld:
    """What the wrappers share: the fault plan, the crash trigger and the seq history."""

    def __init__(self, faults: FaultPlan, crash: Crash) -> None:
        self.faults = faults
        self.crash = crash
        # (service, collection, job id) -> every stored seq seen after a write, in order
        self.seq_history: dict[tuple[str, str, str], list[int]] = defaultdict(list)

    async def before(self, service: str) -> bool:
        """Run before a store call; True when the call must fail after it is applied."""
        if self.crash(service):
            if self.faults.rng.random() < 0.5:  # struck before the call reached the store
                await asyncio.get_running_loop().create_future()  # the crash cancels us here
            return False
        if self.faults.strikes("store_error"):
            raise AutoReconnect("simulated: connection closed before the call")
        return self.faults.strikes("store_lost_ack")


class FaultyCollection:
    def __init__(self, inner: Any, service: str, world: StoreWorld) -> None:
        self._inner = inner
        self._service = service
        self._world = world
        self._seq = SEQ_FIELDS.get((service, inner.name))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not name.startswith("_") and asyncio.iscoroutinefunction(attr):
            return self._wrap(name, attr)
        return attr

    def _wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            lost_ack = await self._world.before(self._service)
            result = await call(*args, **kwargs)
            if self._seq is not None and name in WRITES:
                self._watch(args[0] if args else {})
            if lost_ack:
                raise AutoReconnect("simulated: connection closed after the call was applied")
            return result

        return wrapper

    def find(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        return FaultyCursor(self._inner.find(*args, **kwargs), self._service, self._world)

    def _watch(self, query: Any) -> None:
        """Record the seq now stored in the documents the write touched (read without yielding)."""
        assert self._seq is not None
        field, key = self._seq
        if not isinstance(query, dict) or not isinstance(query.get(key), str):
            return
        sync = self._inner._AsyncMongoMockCollection__collection
        for doc in sync.find({key: query[key]}, {field: 1, key: 1}):
            job_id = doc.get(key)
            if isinstance(job_id, str) and isinstance(doc.get(field), int):
                self._world.seq_history[(self._service, self._inner.name, job_id)].append(doc[field])


class FaultyCursor:
    def __init__(self, inner: Any, service: str, world: StoreWorld) -> None:
        self._inner = inner
        self._service = service
        self._world = world
        self._started = False

    def sort(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        self._inner.sort(*args, **kwargs)
        return self

    def limit(self, *args: Any, **kwargs: Any) -> FaultyCursor:
        self._inner.limit(*args, **kwargs)
        return self

    def __aiter__(self) -> FaultyCursor:
        return self

    async def _first(self) -> None:
        if not self._started:
            self._started = True
            if await self._world.before(self._service):
                raise AutoReconnect("simulated: cursor lost")

    async def __anext__(self) -> Any:
        await self._first()
        return await self._inner.__anext__()

    async def to_list(self, *args: Any, **kwargs: Any) -> Any:
        await self._first()
        return await self._inner.to_list(*args, **kwargs)


class FaultyDatabase:
    def __init__(self, inner: Any, service: str, world: StoreWorld) -> None:
        self._inner = inner
        self._service = service
        self._world = world

    def __getitem__(self, name: str) -> FaultyCollection:
        return FaultyCollection(self._inner[name], self._service, self._world)

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> FaultyCollection:
        return self[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
