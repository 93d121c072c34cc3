"""Bookings rebuilt from the proposals at start-up, so a planner whose platform documents were lost
(a crash of an in-memory store, a restore from an older backup) cannot over-book.

The proposals are the record of what the planner placed: every job it placed and has not seen end
(PLACED, ACCEPTED) and every offer still open (OFFERED, not expired) holds its booking again. A
booking already in the store is left as it is, so a normal restart changes nothing.
"""

from __future__ import annotations

from collections import defaultdict

from structlog.typing import FilteringBoundLogger

from cirasa.common.events import utcnow
from cirasa.planner.calendar import Booking
from cirasa.planner.capacity import CapacityBook
from cirasa.planner.documents import Offer, Proposal
from cirasa.planner.proposals import Proposals

HOLDING = ("PLACED", "ACCEPTED", "OFFERED")  # proposal states whose offers may hold capacity


async def restore_bookings(capacity: CapacityBook, proposals: Proposals, log: FilteringBoundLogger) -> int:
    """Put back every booking the proposals account for and the platforms lack; returns how many."""
    wanted: dict[str, list[Booking]] = defaultdict(list)
    async for doc in proposals.docs.find({"state": {"$in": list(HOLDING)}}):
        for offer in doc.offers:
            booking = _booking_of(doc, offer)
            if booking is not None and offer.platform in capacity.platforms:
                wanted[offer.platform].append(booking)
    restored = 0
    for platform, bookings in wanted.items():
        added = await capacity.restore(platform, bookings)
        if added:
            log.warning("capacity.bookings_restored", platform=platform, count=len(added))
        restored += len(added)
    return restored


def _booking_of(doc: Proposal, offer: Offer) -> Booking | None:
    """What ``offer`` holds, as :mod:`offers`, :mod:`waiting` and :mod:`decisions` booked it."""
    now, end = utcnow(), offer.held_until  # the booking outlasts the offer's own interval
    if end <= now:
        return None
    user = doc.task.user
    if offer.state == "ACCEPTED" and doc.state in ("PLACED", "ACCEPTED"):
        job_id = doc.id if doc.state == "PLACED" else offer.offer_id
        return Booking(
            offer.offer_id, offer.cores, offer.memory_mib, offer.booked_from, end, "job", job_id, user=user
        )
    if offer.state == "OFFERED" and offer.expires_at > now:
        return Booking(
            offer.offer_id,
            offer.cores,
            offer.memory_mib,
            offer.booked_from,
            end,
            "offer",
            None,
            offer.expires_at,
            user,
        )
    return None
