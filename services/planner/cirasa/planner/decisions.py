"""Decisions on offers: accepting one (its siblings are rejected, its booking becomes the job's and
shrinks to where the job runs), rejecting or cancelling one, and refusing a decision on an offer that
is no longer OFFERED."""

from __future__ import annotations

from datetime import datetime

from structlog.typing import FilteringBoundLogger

from cirasa.common.events import Event, OfferDecision, OfferStateChanged, utcnow
from cirasa.planner.capacity import CapacityBook
from cirasa.planner.documents import Offer, Proposal, closed_when_settled
from cirasa.planner.expiry import Expiry
from cirasa.planner.proposals import Proposals

_VERBS = {"ACCEPTED": "accepted", "REJECTED": "rejected", "CANCELLED": "cancelled"}


class Decisions:
    def __init__(
        self, capacity: CapacityBook, proposals: Proposals, expiry: Expiry, log: FilteringBoundLogger
    ) -> None:
        self._capacity = capacity
        self._proposals = proposals
        self._expiry = expiry
        self._log = log

    async def decide(self, ev: OfferDecision) -> None:
        doc = await self._proposals.by_offer(ev.offer_id)
        offer = doc.offer(ev.offer_id) if doc else None
        if doc is None or offer is None:
            self._log.warning("offer.unknown", offer_id=ev.offer_id)
            return
        now = utcnow()
        if offer.state == "OFFERED" and offer.expires_at <= now:
            await self._expiry.expire_offers(doc, {ev.offer_id}, refused=ev)
        elif offer.state != "OFFERED":
            await self._refuse(doc, offer, ev)
        elif ev.decision == "ACCEPTED":
            await self._accept(doc, offer, ev, now)
        else:
            await self._reject(doc, offer, ev)

    async def _refuse(self, doc: Proposal, offer: Offer, ev: OfferDecision) -> None:
        """Only an OFFERED offer can be decided on: say so, and leave the offer as it is."""
        reason = f"the offer is {offer.state}; only an OFFERED offer can be {_VERBS[ev.decision]}"
        refusal = OfferStateChanged(
            **self._proposals.envelope(ev),
            offer_id=ev.offer_id,
            state=offer.state,
            refused=ev.decision,
            reason=reason,
        )
        await self._proposals.cas(doc, [refusal])

    async def _reject(self, doc: Proposal, offer: Offer, ev: OfferDecision) -> None:
        """The client rejects or cancels the offer: it takes that state and frees its booking."""
        offers = doc.offers_with({ev.offer_id}, ev.decision)
        changed = OfferStateChanged(**self._proposals.envelope(ev), offer_id=ev.offer_id, state=ev.decision)
        if await self._proposals.cas(doc, [changed], state=closed_when_settled(offers), offers=offers):
            await self._capacity.release(offer.platform, {ev.offer_id})

    async def _accept(self, doc: Proposal, offer: Offer, ev: OfferDecision, now: datetime) -> None:
        """The accepted offer's id names the job, whose booking shrinks to where it runs (accepted
        ``now``, before the offer expired); its OFFERED siblings are rejected and freed."""
        job_id = offer.offer_id
        run = offer.run_interval(now)
        accepted = offer.model_copy(update={"state": "ACCEPTED", "booked_until": run[1]})
        env = self._proposals.envelope(ev)
        offers: list[Offer] = []
        events: list[Event] = []
        for o in doc.offers:
            if o.offer_id == job_id:
                offers.append(accepted)
                events.append(OfferStateChanged(**env, offer_id=job_id, state="ACCEPTED", job_id=job_id))
            elif o.state == "OFFERED":
                offers.append(o.model_copy(update={"state": "REJECTED"}))
                events.append(
                    OfferStateChanged(
                        **env, offer_id=o.offer_id, state="REJECTED", reason="a sibling offer was accepted"
                    )
                )
            else:
                offers.append(o)
        events.append(self._proposals.job_submitted(doc.task, job_id, accepted, cause=ev))
        if not await self._proposals.cas(doc, events, state="ACCEPTED", offers=offers):
            return
        await self._capacity.confirm(offer.platform, job_id, job_id, run)
        for o in offers:
            if o.state == "REJECTED" and o.offer_id != job_id:
                await self._capacity.release(o.platform, {o.offer_id})
