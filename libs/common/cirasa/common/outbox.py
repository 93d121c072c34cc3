"""Transactional outbox without transactions.

A state change and the events it causes are written in ONE document update: the events go into the
document's ``outbox`` array in the same ``$set``/``$push`` as the new state, which MongoDB applies
atomically. The relay then publishes the entries (waiting for the broker's confirms) and pulls them
out. A crash between the write and the publish leaves the entries in place; the periodic sweep
publishes them later. An event may therefore be published twice, never zero times; consumers
dedupe by ``event_id``.

Whoever publishes an entry holds a claim on it (``claimed_at`` on the entry), so the sweep never
republishes an entry a request is publishing right now. The writer claims its entries in the very
write that queues them (``queue_claimed``) and hands them to ``flush``, which thus neither reads the
document back nor claims again: two store operations per change (the write and one ``$pull``). The
sweep claims by a conditional write. A claim lapses after ``CLAIM_TTL`` (its holder crashed) and is
dropped when the publish fails, so the entry is swept again. The fast path never raises: once the
state change is written it has happened, and the outbox delivers its events later if the broker is
away now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from cirasa.common.bus import Bus
from cirasa.common.events import Event, as_utc, utcnow
from cirasa.common.metrics import OUTBOX_PENDING
from cirasa.common.store import Collection

log = structlog.get_logger(__name__)

OUTBOX_FIELD = "outbox"
# a publish taking longer than this may be repeated by the sweep; it is also how late the event of a
# writer that crashed right after its write goes out, hence short (a publish takes milliseconds)
CLAIM_TTL = timedelta(seconds=10)
SWEEP_GRACE = timedelta(seconds=1)  # younger entries are left to the fast path
PENDING_FILTER: dict[str, Any] = {f"{OUTBOX_FIELD}.0": {"$exists": True}}

Entry = dict[str, Any]


@dataclass(frozen=True)
class Queued:
    """Outbox entries claimed by the write that queues them: the writer publishes them with
    ``OutboxRelay.flush(collection, doc_id, queued.entries)``, and the sweep leaves them alone until
    the claim lapses."""

    entries: list[Entry]

    @property
    def push(self) -> dict[str, Any]:
        """The ``$push`` clause that queues them in the same update as the state change."""
        return {OUTBOX_FIELD: {"$each": self.entries}}


def queue_claimed(events: Sequence[Event]) -> Queued:
    """Entries for ``events``, already claimed (insert ``entries`` whole, or ``$push`` ``push``)."""
    now = _stored_now()
    entries = [{**entry, "claimed_at": now} for entry in _entries(events, now)]
    return Queued(entries)


def outbox_entries(events: Sequence[Event]) -> list[Entry]:
    """Unclaimed outbox entries, as a writer's claim leaves them once it has lapsed (what the sweep
    takes)."""
    return _entries(events, utcnow())


def _entries(events: Sequence[Event], now: datetime) -> list[Entry]:
    return [{"event_id": e.event_id, "queued_at": now, "body": e.model_dump_json()} for e in events]


def _held(entry: Mapping[str, Any], lapsed: datetime) -> bool:
    """Whether someone holds a live claim on the entry (then claiming it is bound to fail)."""
    claimed_at = entry.get("claimed_at")
    return claimed_at is not None and as_utc(claimed_at) >= lapsed


def _stored_now() -> datetime:
    """Now, as a server stores it (milliseconds): a claim is matched again by its time."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class OutboxRelay:
    """Publishes queued events of the given collections and removes them once confirmed."""

    def __init__(self, bus: Bus, collections: Sequence[Collection], service: str) -> None:
        self._bus = bus
        self._collections = list(collections)
        self._service = service

    async def flush(self, collection: Collection, doc_id: Any, written: Sequence[Mapping[str, Any]]) -> None:
        """Publish what a write just queued and claimed (``queue_claimed``), as it is: no read-back.

        Never raises: what it could not publish (broker or store away now) is left for the sweep."""
        try:
            await self._publish(collection, doc_id, [dict(e) for e in written])
        except Exception as exc:
            log.warning("outbox.flush_deferred", service=self._service, doc_id=str(doc_id), error=repr(exc))

    async def sweep(self, min_age: timedelta = SWEEP_GRACE) -> int:
        """Publish entries left behind by a crash or a broker outage; returns how many."""
        published = 0
        pending = 0
        now = utcnow()
        cutoff, lapsed = now - min_age, now - CLAIM_TTL
        for collection in self._collections:
            async for doc in collection.find(PENDING_FILTER, {OUTBOX_FIELD: 1}):
                entries = doc.get(OUTBOX_FIELD) or []
                pending += len(entries)
                due = [e for e in entries if as_utc(e["queued_at"]) <= cutoff and not _held(e, lapsed)]
                published += await self._claim_and_publish(collection, doc["_id"], due)
        OUTBOX_PENDING.labels(self._service).set(pending - published)
        return published

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                n = await self.sweep()
                if n:
                    log.info("outbox.swept", published=n)
            except Exception as exc:  # the broker or the store is down; try again next round
                log.warning("outbox.sweep_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def _claim_and_publish(
        self, collection: Collection, doc_id: Any, entries: list[dict[str, Any]]
    ) -> int:
        claims = await asyncio.gather(*(self._claim(collection, doc_id, e["event_id"]) for e in entries))
        held = [{**e, "claimed_at": at} for e, at in zip(entries, claims, strict=True) if at is not None]
        return await self._publish(collection, doc_id, held)  # the others: out, or someone else's

    async def _publish(self, collection: Collection, doc_id: Any, held: list[Entry]) -> int:
        """Publish entries we hold claims on, every confirm in flight at once; pull what went out in
        one write, and drop the claims on the rest so that the next sweep takes them at once."""
        if not held:
            return 0
        out: list[str] = []

        async def publish(entry: Entry) -> None:
            await self._bus.publish_stored(entry["body"])
            out.append(entry["event_id"])

        try:
            results = await asyncio.gather(*(publish(e) for e in held), return_exceptions=True)
        except BaseException:  # cancelled (a crash, a shutdown): the next sweep takes what is not out
            await self._release(collection, doc_id, [e for e in held if e["event_id"] not in out])
            raise
        await self._release(collection, doc_id, [e for e in held if e["event_id"] not in out])
        if out:
            pull = {"$pull": {OUTBOX_FIELD: {"event_id": {"$in": out}}}}
            await collection.update_one({"_id": doc_id}, pull)
        for result in results:
            if isinstance(result, Exception):
                raise result
        if len(out) < len(held):
            raise RuntimeError("a publish was cancelled")
        return len(out)

    async def _release(self, collection: Collection, doc_id: Any, entries: list[Entry]) -> None:
        for entry in entries:
            held = {"event_id": entry["event_id"], "claimed_at": entry.get("claimed_at")}
            with contextlib.suppress(Exception):  # else the claim lapses after CLAIM_TTL
                await collection.update_one(
                    {"_id": doc_id, OUTBOX_FIELD: {"$elemMatch": held}},
                    {"$unset": {f"{OUTBOX_FIELD}.$.claimed_at": ""}},
                )

    async def _claim(self, collection: Collection, doc_id: Any, event_id: str) -> datetime | None:
        """Take the entry for publishing unless someone holds a live claim on it (or it is gone)."""
        now = _stored_now()
        free = {"$or": [{"claimed_at": None}, {"claimed_at": {"$lt": now - CLAIM_TTL}}]}
        result = await collection.update_one(
            {"_id": doc_id, OUTBOX_FIELD: {"$elemMatch": {"event_id": event_id, **free}}},
            {"$set": {f"{OUTBOX_FIELD}.$.claimed_at": now}},
        )
        return now if result.modified_count == 1 else None
