"""The monitor's stored documents: one ``jobs`` document per job, as seen on its backend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from cirasa.common.events import JobState, utcnow
from cirasa.common.store.documents import StoredDocument

JOBS = "jobs"
ACTIVE = [JobState.PENDING.value, JobState.RUNNING.value]


class MonitoredJob(StoredDocument):
    """A job the monitor follows. JobSubmitted and JobDispatched may arrive in either order; both
    upsert, so every field either may set is optional. ``seq`` is the last JobStateChanged's."""

    id: str = Field(alias="_id")
    state: str = JobState.PENDING.value
    seq: int = 0
    dispatched: bool = False
    user: str = "anonymous"
    app: str | None = None
    platform: str | None = None
    backend: str | None = None
    backend_job_id: str | None = None
    job_dir: str | None = None
    duration_s: float = 0.0
    status: str | None = None
    exit_code: int | None = None
    elapsed_s: float | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    not_before: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    outbox: list[dict[str, Any]] = []

    @staticmethod
    def on_insert() -> dict[str, Any]:
        """The fields a job document starts with, whichever event creates it."""
        return {"state": JobState.PENDING.value, "seq": 0, "outbox": [], "created_at": utcnow()}
