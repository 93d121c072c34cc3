"""The gateway's stored documents: one model per collection it owns.

Models are written with only the fields that were set (``to_doc``), so an optional field a later
update sets is absent until then, as the caesar listings, which show what is stored, expect. Field
order is the stored order.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cirasa.common.store import Document
from cirasa.common.store.documents import StoredDocument

FILES, JOBS, USAGE, OFFERSETS, SESSIONS = "files", "jobs", "usage", "offersets", "sessions"
_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")


def plausible_id(value: object) -> bool:
    """Whether ``value`` can be one of our ids (hex uuids): anything else is not looked up."""
    return isinstance(value, str) and _ID.match(value) is not None


class GatewayDocument(StoredDocument):
    def to_doc(self) -> Document:
        return self.model_dump(by_alias=True, exclude_unset=True)


class StoredFile(GatewayDocument):
    """An uploaded file (``relpath`` under the data directory); deleting it only marks it."""

    id: str = Field(alias="_id")
    fileid: str
    user: str
    relpath: str
    filename_orig: str
    fileext: str
    filesize: float
    size_bytes: int = 0
    filedate: str
    metadata: Any = ""
    tag: Any = ""
    deleted: bool = False
    outbox: list[dict[str, Any]] = []


class Job(GatewayDocument):
    """The jobs read model in caesar-rest's shape; ``job_inputs`` and ``tag`` are as the client sent them."""

    id: str = Field(alias="_id")
    job_id: str
    user: str
    app: str
    job_inputs: Any = None
    data_inputs: Any = None
    tag: Any = ""
    submit_date: str
    metadata: Any = ""
    state: str
    status: str = ""
    seq: int = 0
    pid: Any = ""
    exit_code: int | None = -1
    elapsed_time: float = 0.0
    platform: str | None = None
    resources: dict[str, Any] | None = None
    offer_start: str | None = None
    quote: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    deleted: bool = False
    outbox: list[dict[str, Any]] = []
    # what re-proposes a job nobody answered (see reproposal): the proposal, when it was last sent
    # or answered, and how many times it has been sent again since
    proposal: dict[str, Any] | None = None
    checked_at: datetime | None = None
    reproposed: int = 0


class Usage(GatewayDocument):
    """The accounting service's latest figures for one user (``*``: all users, by app)."""

    id: str = Field(alias="_id")
    usage: dict[str, Any]
    at: datetime


class OfferSet(GatewayDocument):
    """One proposal made through the ExecutionBroker API and the planner's answer to it."""

    id: str = Field(alias="_id")
    user: str
    created_at: datetime
    request: Any
    direct: bool
    result: str  # PENDING until the planner answers YES or NO
    messages: list[dict[str, Any]] = []
    set_size: int | None = None
    offer_ids: list[str] = []
    outbox: list[dict[str, Any]] = []


class Refusal(BaseModel):
    """A client's decision the planner refused, and the offer's phase it left unchanged."""

    decision: str
    state: str
    reason: str
    at: datetime


class StagingProgress(BaseModel):
    """A session's data staging, as the platform last reported it (``JobStaging``)."""

    model_config = ConfigDict(extra="ignore")

    done_bytes: int = 0
    total_bytes: int | None = None
    done_resources: int = 0
    total_resources: int = 0
    done: bool = False
    error: str | None = None
    at: datetime | None = None

    def describe(self) -> str:
        if self.error:
            return f"staging failed: {self.error}"
        size = f"{self.done_bytes / 1e6:.1f}" + (
            f" of {self.total_bytes / 1e6:.1f}" if self.total_bytes else ""
        )
        if self.done:
            return f"data staged: {self.total_resources} resources, {size} MB"
        return f"staging data: {self.done_resources} of {self.total_resources} resources, {size} MB"


class Session(GatewayDocument):
    """One offer; once accepted, also its job's progress (``job_*``)."""

    id: str = Field(alias="_id")
    offerset_id: str
    user: str
    platform: str
    cores: int
    memory_gib: float
    duration_s: int
    start: datetime
    expires_at: datetime | None = None
    cost_core_hours: float | None = None
    description: str = ""
    offer_state: str
    job_id: str | None = None
    job_state: str | None = None
    job_status: str | None = None
    job_seq: int = 0
    messages: list[dict[str, Any]] = []
    created: datetime
    modified: datetime | None = None
    refusal: Refusal | None = None
    staging: StagingProgress | None = None
    staging_s: float = 0.0  # how long before ``start`` staging was planned to begin
    outbox: list[dict[str, Any]] = []
