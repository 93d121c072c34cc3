"""Transactional outbox without transactions.

A state change and the events it causes are written in ONE document update: the events go into the
document's ``outbox`` array in the same ``$set``/``$push`` as the new state, which MongoDB applies
atomically. The relay then publishes each entry (waiting for the broker's confirm) and pulls it
out. A crash between the write and the publish leaves the entry in place; the periodic sweep
publishes it later. An event may therefore be published twice, never zero times; consumers
dedupe by ``event_id``.

Whoever publishes an entry (the fast path right after the write, or the sweep) first claims it with a
conditional write (``claimed_at`` on the entry), so the sweep never republishes an entry a request is
publishing right now. A claim lapses after ``CLAIM_TTL`` (its holder crashed) and is dropped when the
publish fails, so the entry is swept again. The fast path never raises: once the state change is
written it has happened, and the outbox delivers its events later if the broker is away now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from cirasa.common.bus import Bus
from cirasa.common.events import Event, as_utc, decode_event, utcnow
from cirasa.common.metrics import OUTBOX_PENDING
from cirasa.common.store import Collection

log = structlog.get_logger(__name__)

OUTBOX_FIELD = "outbox"
CLAIM_TTL = timedelta(seconds=30)  # a publish taking longer than this may be repeated by the sweep
SWEEP_GRACE = timedelta(seconds=1)  # younger entries are left to the fast path
PENDING_FILTER: dict[str, Any] = {f"{OUTBOX_FIELD}.0": {"$exists": True}}


def outbox_push(events: Sequence[Event]) -> dict[str, Any]:
    """The ``$push`` clause that queues ``events`` in the same update as the state change."""
    entries = [{"event_id": e.event_id, "queued_at": utcnow(), "body": e.model_dump_json()} for e in events]
    return {OUTBOX_FIELD: {"$each": entries}}


def outbox_entries(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Outbox entries for a document that is inserted whole."""
    return outbox_push(events)[OUTBOX_FIELD]["$each"]


class OutboxRelay:
    """Publishes queued events of the given collections and removes them once confirmed."""

    def __init__(self, bus: Bus, collections: Sequence[Collection], service: str) -> None:
        self._bus = bus
        self._collections = list(collections)
        self._service = service

    async def flush(self, collection: Collection, doc_id: Any) -> None:
        """Publish what one document has queued (the fast path, right after the write).

        Never raises: what it could not publish (broker or store away now) is left for the sweep."""
        try:
            doc = await collection.find_one({"_id": doc_id}, {OUTBOX_FIELD: 1})
            if doc:
                await self._publish_entries(collection, doc_id, doc.get(OUTBOX_FIELD) or [])
        except Exception as exc:
            log.warning("outbox.flush_deferred", service=self._service, doc_id=str(doc_id), error=repr(exc))

    async def sweep(self, min_age: timedelta = SWEEP_GRACE) -> int:
        """Publish entries left behind by a crash or a broker outage; returns how many."""
        published = 0
        pending = 0
        cutoff = utcnow() - min_age
        for collection in self._collections:
            async for doc in collection.find(PENDING_FILTER, {OUTBOX_FIELD: 1}):
                entries = doc.get(OUTBOX_FIELD) or []
                pending += len(entries)
                due = [e for e in entries if as_utc(e["queued_at"]) <= cutoff]
                published += await self._publish_entries(collection, doc["_id"], due)
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

    async def _publish_entries(
        self, collection: Collection, doc_id: Any, entries: list[dict[str, Any]]
    ) -> int:
        done = 0
        for entry in entries:
            event_id = entry["event_id"]
            claimed_at = await self._claim(collection, doc_id, event_id)
            if claimed_at is None:
                continue  # published (or being published) by someone else
            try:
                await self._bus.publish(decode_event(entry["body"]))
            except BaseException:
                with contextlib.suppress(Exception):  # let the next sweep take it at once
                    await collection.update_one(
                        {
                            "_id": doc_id,
                            OUTBOX_FIELD: {"$elemMatch": {"event_id": event_id, "claimed_at": claimed_at}},
                        },
                        {"$unset": {f"{OUTBOX_FIELD}.$.claimed_at": ""}},
                    )
                raise
            await collection.update_one({"_id": doc_id}, {"$pull": {OUTBOX_FIELD: {"event_id": event_id}}})
            done += 1
        return done

    async def _claim(self, collection: Collection, doc_id: Any, event_id: str) -> datetime | None:
        """Take the entry for publishing unless someone holds a live claim on it (or it is gone)."""
        now = utcnow()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as a server stores it
        free = {"$or": [{"claimed_at": None}, {"claimed_at": {"$lt": now - CLAIM_TTL}}]}
        result = await collection.update_one(
            {"_id": doc_id, OUTBOX_FIELD: {"$elemMatch": {"event_id": event_id, **free}}},
            {"$set": {f"{OUTBOX_FIELD}.$.claimed_at": now}},
        )
        return now if result.modified_count == 1 else None
