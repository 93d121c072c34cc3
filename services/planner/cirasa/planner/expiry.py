"""Offers past their expiry become EXPIRED and free what they booked; orphan bookings are mended."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from cirasa.common.events import Event, OfferDecision, OfferStateChanged, utcnow
from cirasa.planner.capacity import CapacityBook
from cirasa.planner.documents import Proposal, closed_when_settled
from cirasa.planner.proposals import Proposals

ORPHAN_GRACE = timedelta(seconds=5)  # an offer's booking outlives its expiry this long before mending
GARBAGE_EVERY = timedelta(minutes=1)  # how often the tombstones of removed bookings are deleted


class Expiry:
    def __init__(self, capacity: CapacityBook, proposals: Proposals) -> None:
        self._capacity = capacity
        self._proposals = proposals
        self._collected = datetime.min.replace(tzinfo=UTC)  # when removed bookings were last deleted

    async def sweep(self) -> None:
        """Expire every offer past its expiry; then mend the bookings no proposal accounts for."""
        now = utcnow()
        due = self._proposals.docs.find(
            {"state": "OFFERED", "offers": {"$elemMatch": {"state": "OFFERED", "expires_at": {"$lte": now}}}}
        )
        async for doc in due:
            await self.expire_offers(
                doc, {o.offer_id for o in doc.offers if o.state == "OFFERED" and o.expires_at <= now}
            )
        for name in self._capacity.platforms:
            await self._mend_orphans(name, now)
        if now - self._collected >= GARBAGE_EVERY:
            self._collected = now
            await self._capacity.ledger.collect_garbage()

    async def expire_offers(
        self, doc: Proposal, ids: Collection[str], refused: OfferDecision | None = None
    ) -> None:
        """Expire the offers ``ids``; ``refused`` is a decision that came too late for one of them."""
        offers = doc.offers_with(ids, "EXPIRED")
        env = self._proposals.envelope(refused) if refused else self._proposals.envelope_of(doc)
        events: list[Event] = [
            OfferStateChanged(
                **env,
                offer_id=o.offer_id,
                state="EXPIRED",
                reason=f"the offer expired at {o.expires_at.isoformat()}",
                refused=refused.decision if refused and refused.offer_id == o.offer_id else None,
            )
            for o in doc.offers
            if o.offer_id in ids
        ]
        if await self._proposals.cas(doc, events, state=closed_when_settled(offers), offers=offers):
            for o in offers:
                if o.offer_id in ids:
                    await self._capacity.release(o.platform, {o.offer_id})

    async def _mend_orphans(self, platform: str, now: datetime) -> None:
        """Settle offer bookings left behind by a crash between booking and writing the proposal:
        keep (as the job's) those whose offer was accepted, release the rest."""
        state = await self._capacity.state(platform)
        stale = {
            b.holder
            for b in state.offers()
            if b.expires_at is not None and b.expires_at <= now - ORPHAN_GRACE
        }
        for holder in stale:
            owner = await self._proposals.by_offer(holder)
            offer = owner.offer(holder) if owner else None
            running = owner is not None and owner.state == "ACCEPTED"  # DONE: its job has ended
            if offer is not None and offer.state == "ACCEPTED" and running:  # to the interval it was told
                await self._capacity.confirm(platform, holder, holder, (offer.booked_from, offer.held_until))
            else:
                await self._capacity.release(platform, {holder})
