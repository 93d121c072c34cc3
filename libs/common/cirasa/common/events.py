"""The public event contract: envelope, job states and every event type.

Other CIRASA components consume these events, so they change only compatibly: new optional
fields are fine, renames and removals need a new ``version``. The AsyncAPI document is generated
from these models (``cirasa asyncapi``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A datetime read back from a store may have lost its zone; stored ones are always UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class JobState(StrEnum):
    """caesar-rest's job states; the last four are sinks."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ABORTED = "ABORTED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED-OUT"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


TERMINAL_STATES: tuple[str, ...] = tuple(s.value for s in JobState if s.is_terminal)


class Resources(BaseModel):
    """What a job runs with: cores, memory and wall time."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    cores: int = Field(ge=1, le=4096)
    memory_gib: float = Field(gt=0, le=65536)
    duration_s: int = Field(ge=1, le=366 * 86400, description="wall-time limit in seconds")


class ResourceRequest(BaseModel):
    """A range the planner may choose from; the offer picks values inside it."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    min_cores: int = Field(1, ge=1, le=4096)
    max_cores: int = Field(1, ge=1, le=4096)
    min_memory_gib: float = Field(1.0, gt=0, le=65536)
    max_memory_gib: float = Field(1.0, gt=0, le=65536)
    duration_s: int = Field(3600, ge=1, le=366 * 86400)


class InputFile(BaseModel):
    """A user file, named by its id and its path relative to the shared data root."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    file_id: str
    relpath: str
    size_bytes: int = 0
    name: str = Field("", description="the file's own name, as uploaded: products are named after it")


class DataSource(BaseModel):
    """Something a job needs fetched onto its platform before it starts (ExecutionBroker data
    resources and executables given by URL); the platform stages it into a shared cache."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    name: str = Field(description="the resource's name in the request, unique within the job")
    scheme: Literal["http", "s3", "ivoa"]
    location: str = Field(
        description="http: an http(s) URL; s3: s3://bucket/key; ivoa: an ivo:// identifier or a DataLink URL"
    )
    endpoint: str | None = Field(None, description="s3: the service's URL; ivoa: a DataLink service URL")
    checksum: str | None = Field(None, description="<algorithm>:<hex digest>, e.g. sha256:ab12...")
    size_bytes: int | None = Field(None, ge=0, description="the size the request declared, if any")
    role: Literal["data", "executable"] = "data"

    def key(self) -> str:
        """What the platform's cache knows the resource by: the same source gives the same key."""
        ident = [self.scheme, self.location, self.endpoint, self.checksum]
        return hashlib.sha256(json.dumps(ident, separators=(",", ":")).encode()).hexdigest()

    def origin(self) -> str:
        """The host the data comes from (bandwidth is learnt per origin): the endpoint's, else the
        location's, else the ivo:// authority."""
        for url in (self.endpoint, self.location):
            host = urlsplit(url).hostname if url else None
            if host:
                return host
        return self.location


class VolumeMount(BaseModel):
    """Where a job sees staged data or scratch storage: a path inside the job, read-only or not."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    name: str
    path: str = Field(description="absolute path inside the job")
    mode: Literal["READONLY", "READWRITE"] = "READONLY"
    resources: list[str] = Field(
        default_factory=list, description="names of the DataSource items shown in this volume"
    )
    cardinality: Literal["SINGLE", "CONTAINER"] = Field(
        "CONTAINER",
        description="SINGLE: path is the one resource's file; CONTAINER: a directory of the resources",
    )
    storage_gib: float | None = Field(
        None, gt=0, description="scratch storage of this size (an empty writable directory)"
    )


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    routing_key: ClassVar[str]

    event_id: str = Field(default_factory=new_id)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str = "unknown"
    correlation_id: str = Field(description="the job or proposal this event belongs to")
    causation_id: str | None = Field(None, description="event_id of the event that caused this one")
    user: str = "anonymous"


class TaskProposed(Event):
    """Someone asks: can this task run, where and when?"""

    routing_key: ClassVar[str] = "task.proposed"
    type: Literal["TaskProposed"] = "TaskProposed"

    app: str
    options: dict[str, Any] = Field(default_factory=dict, description="validated app options")
    inputs: list[InputFile] = Field(default_factory=list)
    resources: ResourceRequest = Field(default_factory=ResourceRequest)
    start_after: datetime | None = None
    start_before: datetime | None = None
    auto_accept: bool = Field(True, description="accept the best offer at once (caesar-rest POST /job)")
    tag: str = ""
    executable_kind: str = Field(
        "app", description="app (one of ours), docker-container, singularity-container or jupyter-notebook"
    )
    image: str | None = Field(None, description="container image, for container executables")
    command: list[str] = Field(
        default_factory=list, description="container command, for container executables"
    )
    staging: list[DataSource] = Field(
        default_factory=list, description="data and executables to fetch before the job starts"
    )
    volumes: list[VolumeMount] = Field(default_factory=list)


class OfferMade(Event):
    """A platform's answer to a proposal: an offer, or a NO with reasons."""

    routing_key: ClassVar[str] = "offer.made"
    type: Literal["OfferMade"] = "OfferMade"

    offer_id: str
    platform: str | None = None
    accepted: bool = Field(description="False means NO: see reasons")
    resources: Resources | None = None
    start: datetime | None = None
    expires_at: datetime | None = None
    cost_core_hours: float | None = None
    reasons: list[str] = Field(default_factory=list)
    set_size: int = Field(1, ge=1, description="how many OfferMade events answer this proposal")
    description: str = ""
    staging_s: float = Field(0, ge=0, description="time allowed before start for staging the task's data")


class JobSubmitted(Event):
    """An offer was accepted: run this task on this platform with these resources."""

    routing_key: ClassVar[str] = "job.submitted"
    type: Literal["JobSubmitted"] = "JobSubmitted"

    job_id: str
    offer_id: str
    platform: str
    backend: str
    resources: Resources
    app: str
    options: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputFile] = Field(default_factory=list)
    start: datetime | None = Field(None, description="not before this time (the offer's start)")
    booked_until: datetime | None = Field(
        None,
        description="the end of the capacity booked for the job: it must not run past it (additive in v1)",
    )
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    staging: list[DataSource] = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    staging_s: float = Field(
        0, ge=0, description="the staging time the offer allowed for: staging starts this long before start"
    )


OfferPhase = Literal["OFFERED", "ACCEPTED", "REJECTED", "EXPIRED", "CANCELLED"]


class OfferDecision(Event):
    """A client accepts, rejects or cancels an offer (the ExecutionBroker's phase update)."""

    routing_key: ClassVar[str] = "offer.decision"
    type: Literal["OfferDecision"] = "OfferDecision"

    offer_id: str
    decision: Literal["ACCEPTED", "REJECTED", "CANCELLED"]


class OfferStateChanged(Event):
    """An offer's phase changed, or a decision on it was refused (``refused`` with ``reason``)."""

    routing_key: ClassVar[str] = "offer.state_changed"
    type: Literal["OfferStateChanged"] = "OfferStateChanged"

    offer_id: str
    state: OfferPhase
    reason: str = ""
    refused: Literal["ACCEPTED", "REJECTED", "CANCELLED"] | None = Field(
        None, description="the decision that was refused; state is the offer's unchanged phase"
    )
    job_id: str | None = None


class JobDispatched(Event):
    """The scheduler handed the job to its backend (or failed to)."""

    routing_key: ClassVar[str] = "job.dispatched"
    type: Literal["JobDispatched"] = "JobDispatched"

    job_id: str
    platform: str
    backend: str
    backend_job_id: str | None = None
    job_dir: str | None = Field(None, description="job directory relative to the jobs root")
    duration_s: int = 0
    error: str | None = None
    canceled: bool = Field(False, description="cancelled before it reached the backend")


class JobStateChanged(Event):
    """A job moved to a new state. Consumers apply it only if ``seq`` is newer than theirs."""

    routing_key: ClassVar[str] = "job.state_changed"
    type: Literal["JobStateChanged"] = "JobStateChanged"

    job_id: str
    platform: str | None = None
    state: JobState
    status: str = ""
    exit_code: int = -1
    elapsed_s: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seq: int = Field(ge=0, description="per-job, monotonically increasing")
    app: str | None = None


class StagedSource(BaseModel):
    """One resource as staged: where from, how big, how long it took, and whether the cache had it."""

    model_config = ConfigDict(extra="ignore")  # consumers of another version: see docs/events.md

    name: str
    source: str = Field(description="the host it came from (the planner learns bandwidth per source)")
    key: str = Field(description="the cache key of the resource")
    size_bytes: int = Field(ge=0)
    seconds: float = Field(ge=0)
    cached: bool


class JobStaging(Event):
    """A job's data is being staged on its platform (PREPARING); the last one has ``done`` set.

    Progress events are best effort (a lost one only delays the shown progress)."""

    routing_key: ClassVar[str] = "job.staging"
    type: Literal["JobStaging"] = "JobStaging"

    job_id: str
    platform: str
    done_bytes: int = Field(0, ge=0)
    total_bytes: int | None = Field(None, ge=0, description="None while sizes are unknown")
    done_resources: int = Field(0, ge=0)
    total_resources: int = Field(0, ge=0)
    done: bool = False
    error: str | None = None
    sources: list[StagedSource] = Field(default_factory=list, description="set when done")


class CancelRequested(Event):
    """A user asked to cancel a job."""

    routing_key: ClassVar[str] = "job.cancel_requested"
    type: Literal["CancelRequested"] = "CancelRequested"

    job_id: str
    reason: str = "Job canceled by user"


class FileUploaded(Event):
    routing_key: ClassVar[str] = "file.uploaded"
    type: Literal["FileUploaded"] = "FileUploaded"

    file_id: str
    size_bytes: int


class FileDeleted(Event):
    routing_key: ClassVar[str] = "file.deleted"
    type: Literal["FileDeleted"] = "FileDeleted"

    file_id: str
    size_bytes: int


class UsageUpdated(Event):
    """Accounting's view of one user's usage, or of the whole platform when ``user`` is ``*``."""

    routing_key: ClassVar[str] = "usage.updated"
    type: Literal["UsageUpdated"] = "UsageUpdated"

    usage: dict[str, Any]


AnyEvent = Annotated[
    TaskProposed
    | OfferMade
    | OfferDecision
    | OfferStateChanged
    | JobSubmitted
    | JobDispatched
    | JobStateChanged
    | JobStaging
    | CancelRequested
    | FileUploaded
    | FileDeleted
    | UsageUpdated,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        TaskProposed,
        OfferMade,
        OfferDecision,
        OfferStateChanged,
        JobSubmitted,
        JobDispatched,
        JobStateChanged,
        JobStaging,
        CancelRequested,
        FileUploaded,
        FileDeleted,
        UsageUpdated,
    )
}

_any_event: TypeAdapter[Event] = TypeAdapter(AnyEvent)


def decode_event(body: bytes | str | dict[str, Any]) -> Event:
    """Parse any event from its JSON form; raises pydantic.ValidationError on bad input."""
    if isinstance(body, dict):
        return _any_event.validate_python(body)
    return _any_event.validate_json(body)
