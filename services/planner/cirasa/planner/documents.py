"""The planner's stored documents: one model per collection it owns, and the indexes on them.

* ``proposals``: a proposal, its offers and its outbox (``Proposal``);
* ``platforms``: a platform's totals, the version of its bookings and its last change (``Platform``);
* ``bookings``: one document per booking, by platform and time (``StoredBooking``; see ``ledger``);
* ``stats``: per platform, how late jobs start against their offers (``StartDelayStats``).

Proposals and platforms change only by compare-and-swap on their ``version``. Field order is the
stored order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_serializer, field_validator
from pymongo import ASCENDING, IndexModel

from cirasa.common.events import OfferPhase, ResourceRequest, Resources, TaskProposed, as_utc
from cirasa.common.store import Document
from cirasa.common.store.documents import StoredDocument
from cirasa.planner.calendar import DISPATCH_SLACK, Booking, BookingKind

PROPOSALS = "proposals"
PLATFORMS = "platforms"
BOOKINGS = "bookings"
STATS = "stats"
STAGING_STATS = "staging_stats"  # planner.staging: bandwidth per origin, what each platform holds

INDEXES: dict[str, Sequence[IndexModel]] = {
    PROPOSALS: [
        IndexModel([("state", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("offers.offer_id", ASCENDING)]),
    ],
    BOOKINGS: [
        IndexModel([("platform", ASCENDING), ("start", ASCENDING)]),
        IndexModel([("platform", ASCENDING), ("end", ASCENDING)]),
        IndexModel([("job_id", ASCENDING)]),
        IndexModel([("removed_at", ASCENDING)]),
    ],
}

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
ProposalState = Literal["NEW", "NO", "WAITING", "OFFERED", "ACCEPTED", "CLOSED", "PLACED", "CANCELED", "DONE"]


class Offer(BaseModel):
    """An offer as its proposal keeps it; ``offer_id`` also holds its booking (and names its job).

    ``[start, end)`` is the job's own interval (its duration and the platform's usual start delay), as
    offered; its booking runs on to ``booked_until``: the ``DISPATCH_SLACK`` and, until the offer is
    accepted, its time to live (an offer accepted late runs late). On accept the booking shrinks to the
    job's real interval (:meth:`run_interval`). Offers stored without ``booked_until`` booked ``end``.
    """

    offer_id: str
    platform: str
    backend: str
    cores: int
    memory_mib: int
    start: UtcDatetime
    end: UtcDatetime
    expires_at: UtcDatetime
    state: OfferPhase
    description: str
    booked_until: UtcDatetime | None = None
    staging_s: float = 0.0  # the staging time allowed for before ``start`` (see planner.staging)

    def resources(self, duration_s: int) -> Resources:
        return Resources(cores=self.cores, memory_gib=self.memory_mib / 1024, duration_s=duration_s)

    @property
    def held_until(self) -> datetime:
        """The end of the offer's booking."""
        return self.booked_until or self.end

    @property
    def booked_from(self) -> datetime:
        """The start of the offer's booking: its data is staged (``staging_s``) before the job starts."""
        return self.start - timedelta(seconds=self.staging_s)

    def run_interval(self, accepted_at: datetime) -> tuple[datetime, datetime]:
        """Where the job runs when the offer is accepted at ``accepted_at`` (before it expires): from
        its booking's start, or the accept if later, for its staging, its length and the
        ``DISPATCH_SLACK``. It lies inside the offer's booking, which covers a late accept."""
        begin = max(self.booked_from, accepted_at)
        return begin, begin + (self.end - self.booked_from) + DISPATCH_SLACK


class Proposal(StoredDocument):
    """A proposal (``_id`` is its correlation id); ``reasons`` is stored only once it is NO."""

    id: str = Field(alias="_id")
    state: ProposalState
    version: int = 0
    user: str
    task: TaskProposed
    created_at: UtcDatetime
    causation_id: str | None = None
    offers: list[Offer] = []
    outbox: list[dict[str, Any]] = []
    reasons: list[str] | None = None

    @field_serializer("task")
    def _task_as_stored(self, task: TaskProposed) -> dict[str, Any]:
        return task.model_dump(mode="json")

    def to_doc(self) -> Document:
        return self.model_dump(by_alias=True, exclude_unset=True)

    def offer(self, offer_id: str) -> Offer | None:
        return next((o for o in self.offers if o.offer_id == offer_id), None)

    def offers_with(self, ids: Collection[str], state: OfferPhase) -> list[Offer]:
        """The offers with those in ``ids`` moved to ``state`` (copies: the proposal is unchanged)."""
        return [o.model_copy(update={"state": state}) if o.offer_id in ids else o for o in self.offers]


def closed_when_settled(offers: list[Offer]) -> ProposalState | None:
    """CLOSED once no offer is OFFERED any more; None (unchanged) while one still is."""
    return None if any(o.state == "OFFERED" for o in offers) else "CLOSED"


class _RequestOnly(BaseModel):
    resources: ResourceRequest
    user: str = "anonymous"


class WaitingProposal(StoredDocument):
    """What the drain reads of a waiting proposal: its resource request (``WAITING_FIELDS``)."""

    id: str = Field(alias="_id")
    task: _RequestOnly


WAITING_FIELDS = {"task.resources": 1, "task.user": 1, "created_at": 1}


class BookingChange(BaseModel):
    """One committed change of a platform's bookings: version ``v`` of the platform is version ``v - 1``
    with the bookings of ``drop`` removed and those of ``put`` added (or replaced, by holder)."""

    v: int
    put: list[Booking] = []
    drop: list[str] = []
    totals: tuple[int, int] | None = None  # new (cores, memory_mib) from configuration

    @field_validator("put", mode="plain")
    @classmethod
    def _parse_bookings(cls, value: list[Any]) -> list[Booking]:
        return [b if isinstance(b, Booking) else Booking.from_doc(b) for b in value]

    @field_serializer("put")
    def _bookings_as_stored(self, put: list[Booking]) -> list[dict[str, Any]]:
        return [b.to_doc() for b in put]


class Platform(StoredDocument):
    """A platform's totals (from configuration), its version and its ``last`` change. Every change
    before ``last`` is already in the bookings collection (see ``ledger``)."""

    id: str = Field(alias="_id")
    cores: int = 0
    memory_mib: int = 0
    version: int = 0
    last: BookingChange | None = None


class StoredBooking(StoredDocument):
    """One booking (``_id`` is its holder) as of the platform's version ``v``; a removed one stays as a
    tombstone for a while, so a late write of an older version cannot bring it back."""

    id: str = Field(alias="_id")
    platform: str
    v: int
    removed: bool = False
    removed_at: UtcDatetime | None = None
    cores: int = 0
    memory_mib: int = 0
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    kind: BookingKind = "offer"
    job_id: str | None = None
    expires_at: UtcDatetime | None = None
    user: str | None = None

    def booking(self) -> Booking:
        """The booking it holds (a live one: tombstones have no interval)."""
        if self.start is None or self.end is None:
            raise ValueError(f"booking {self.id} has no interval (removed: {self.removed})")
        return Booking(
            self.id,
            self.cores,
            self.memory_mib,
            self.start,
            self.end,
            self.kind,
            self.job_id,
            self.expires_at,
            self.user,
        )


class StartDelayStats(StoredDocument):
    """How late jobs start on the platform ``_id`` against their offers (a moving average)."""

    id: str = Field(alias="_id")
    start_delay_s: float
    samples: int = 0
