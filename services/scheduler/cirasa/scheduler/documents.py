"""The scheduler's stored documents: one ``dispatches`` document per job."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cirasa.common.events import JobSubmitted
from cirasa.common.store.documents import StoredDocument

DISPATCHES = "dispatches"
DispatchState = Literal["SUBMITTING", "CANCEL_BEFORE_START", "DISPATCHED", "FAILED", "CANCELED"]
WAITING: tuple[DispatchState, ...] = ("SUBMITTING", "CANCEL_BEFORE_START")  # not yet handed to a backend


class Dispatch(StoredDocument):
    """A job on its way to a backend: the idempotency key of its start and the outbox of JobDispatched.

    A CancelRequested may arrive before the JobSubmitted; it creates the document without a platform.
    """

    id: str = Field(alias="_id")
    state: DispatchState
    user: str
    job_dir: str
    platform: str | None = None
    backend: str | None = None
    submitted: JobSubmitted | None = None
    not_before: datetime | None = None  # the booked start, or the next try after a transient error
    claimed_at: datetime | None = None
    attempts: int = 0  # submits that ended in a transient error (the job may have started anyway)
    cancel_requested: bool = False
    backend_job_id: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    dispatched_at: datetime | None = None
    outbox: list[dict[str, Any]] = []

    @property
    def maybe_started(self) -> bool:
        """An earlier dispatcher claimed the job (as read before this claim) or its submit's answer
        was lost: the backend may run it although nothing here says so."""
        return self.claimed_at is not None or self.attempts > 0
