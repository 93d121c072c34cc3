"""The proposals collection: every change is a compare-and-swap on the proposal's ``version`` that
carries the events it causes in the same write (outbox), so a change and its events happen together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.errors import DuplicateKeyError

from cirasa.common.events import Event, JobSubmitted, OfferMade, OfferStateChanged, TaskProposed, utcnow
from cirasa.common.metrics import OFFERS
from cirasa.common.outbox import OutboxRelay, queue_claimed
from cirasa.common.store import Collection
from cirasa.common.store.documents import Documents
from cirasa.planner.documents import Offer, Proposal, ProposalState

Envelope = dict[str, Any]  # the fields every event the planner publishes starts with


class Proposals:
    def __init__(self, collection: Collection, relay: OutboxRelay, producer: str) -> None:
        self.docs = Documents(collection, Proposal)
        self._relay = relay
        self._producer = producer

    async def open(self, ev: TaskProposed) -> Proposal | None:
        """The proposal ``ev`` makes, stored NEW on first delivery; a redelivery finds it as it is."""
        doc = self._new(ev, "NEW")
        try:
            await self.docs.insert(doc)
        except DuplicateKeyError:
            return await self.docs.get(ev.correlation_id)
        return doc

    async def open_refused(
        self, ev: TaskProposed, events: Sequence[Event], reasons: list[str]
    ) -> Proposal | None:
        """A proposal no platform could ever run, stored NO with the events that say so, in ONE write
        (what ``open`` then ``cas`` would leave, version 1 included), and published. A redelivery
        finds the stored proposal as it is and gets it back; None once this call answered it."""
        queued = queue_claimed(events)
        doc = self._new(ev, "NO", version=1, reasons=reasons, outbox=queued.entries)
        try:
            await self.docs.insert(doc)
        except DuplicateKeyError:
            return await self.docs.get(ev.correlation_id)
        _count_offers(doc, events)
        await self._relay.flush(self.docs.raw, doc.id, queued.entries)
        return None

    @staticmethod
    def _new(
        ev: TaskProposed,
        state: ProposalState,
        version: int = 0,
        reasons: list[str] | None = None,
        outbox: list[dict[str, Any]] | None = None,
    ) -> Proposal:
        said = {} if reasons is None else {"reasons": reasons}  # stored only once it is NO
        return Proposal(
            id=ev.correlation_id,
            state=state,
            version=version,
            user=ev.user,
            task=ev,
            created_at=utcnow(),
            causation_id=ev.event_id,
            offers=[],
            outbox=outbox or [],
            **said,
        )

    async def by_offer(self, offer_id: str) -> Proposal | None:
        return await self.docs.find_one({"offers.offer_id": offer_id})

    async def cas(
        self,
        doc: Proposal,
        events: Sequence[Event] = (),
        *,
        state: ProposalState | None = None,
        offers: list[Offer] | None = None,
        reasons: list[str] | None = None,
    ) -> bool:
        """Write the given fields and queue ``events`` only if the proposal is still the version we
        read; on success ``doc`` is brought up to date and the events are published."""
        changes = {
            name: value
            for name, value in (("state", state), ("offers", offers), ("reasons", reasons))
            if value is not None
        }
        update: dict[str, Any] = {"$inc": {"version": 1}}
        if changes:
            update["$set"] = doc.model_copy(update=changes).model_dump(include=set(changes))
        queued = queue_claimed(events)
        if events:
            update["$push"] = queued.push
        if not await self.docs.update({"_id": doc.id, "version": doc.version}, update):
            return False
        for name, value in changes.items():
            setattr(doc, name, value)
        doc.version += 1
        if events:
            _count_offers(doc, events)
            await self._relay.flush(self.docs.raw, doc.id, queued.entries)
        return True

    def envelope(self, cause: Event) -> Envelope:
        return {
            "producer": self._producer,
            "correlation_id": cause.correlation_id,
            "causation_id": cause.event_id,
            "user": cause.user,
        }

    def envelope_of(self, doc: Proposal) -> Envelope:
        """For events no event caused (a timer's)."""
        return {"producer": self._producer, "correlation_id": doc.id, "user": doc.user}

    def job_submitted(
        self, task: TaskProposed, job_id: str, offer: Offer, cause: Event | None = None
    ) -> JobSubmitted:
        """Run ``task`` as ``job_id`` on the accepted ``offer``: not before its start, and not past the
        end of its booking (the scheduler cuts the job there)."""
        return JobSubmitted(
            **self.envelope(cause or task),
            job_id=job_id,
            offer_id=offer.offer_id,
            platform=offer.platform,
            backend=offer.backend,
            resources=offer.resources(task.resources.duration_s),
            app=task.app,
            options=task.options,
            inputs=task.inputs,
            start=offer.start,
            booked_until=offer.held_until,
            image=task.image,
            command=task.command,
            staging=task.staging,
            volumes=task.volumes,
            staging_s=offer.staging_s,
        )


def _count_offers(doc: Proposal, events: Sequence[Event]) -> None:
    platforms = {o.offer_id: o.platform for o in doc.offers}
    for ev in events:
        if isinstance(ev, OfferMade):
            OFFERS.labels(ev.platform or "none", "made" if ev.accepted else "no").inc()
        elif isinstance(ev, OfferStateChanged) and ev.refused is None:
            OFFERS.labels(platforms.get(ev.offer_id, "?"), ev.state.lower()).inc()
