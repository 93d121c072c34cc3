"""Accounting's stored documents: its own copies of jobs and files, and each user's usage."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cirasa.common.events import JobState
from cirasa.common.store.documents import StoredDocument

JOBS, FILES, USAGE = "jobs", "files", "usage"
ALL_USERS = "*"  # the usage document of the whole platform


class AccountedJob(StoredDocument):
    """A job as accounting counts it; ``seq`` guards against stale JobStateChanged."""

    id: str = Field(alias="_id")
    user: str
    app: str | None = None
    state: str = JobState.PENDING.value
    seq: int = 0
    elapsed_s: float = 0.0


class AccountedFile(StoredDocument):
    id: str = Field(alias="_id")
    user: str
    size_bytes: int = 0
    deleted: bool = False


class Usage(StoredDocument):
    """One user's (or ``*``'s) usage: ``current`` the last figures (caesar-rest's field names), and
    the outbox of UsageUpdated. Which users are due again is kept in memory, not here."""

    id: str = Field(alias="_id")
    current: dict[str, Any] = {}
    outbox: list[dict[str, Any]] = []
