"""Transactional outbox without transactions.

A state change and the events it causes are written in ONE document update: the events go into the
document's ``outbox`` array in the same ``$set``/``$push`` as the new state, which MongoDB applies
atomically. The relay then publishes each entry (waiting for the broker's confirm) and pulls it
out. A crash between the write and the publish leaves the entry in place; the periodic sweep
publishes it later. An event may therefore be published twice, never zero times; consumers
dedupe by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog

from cirasa.common.bus import Bus
from cirasa.common.events import Event, as_utc, decode_event, utcnow
from cirasa.common.metrics import OUTBOX_PENDING
from cirasa.common.store import Collection

log = structlog.get_logger(__name__)

OUTBOX_FIELD = "outbox"
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
        """Publish what one document has queued (the fast path, right after the write)."""
        doc = await collection.find_one({"_id": doc_id}, {OUTBOX_FIELD: 1})
        if doc:
            await self._publish_entries(collection, doc_id, doc.get(OUTBOX_FIELD) or [])

    async def sweep(self, min_age: timedelta = timedelta(seconds=1)) -> int:
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
            event = decode_event(entry["body"])
            await self._bus.publish(event)
            await collection.update_one(
                {"_id": doc_id}, {"$pull": {OUTBOX_FIELD: {"event_id": entry["event_id"]}}}
            )
            done += 1
        return done
