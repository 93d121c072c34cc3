"""IVOA UWS 1.1 view of the jobs read model under ``/uws`` (REST binding, XML from vo-models).

Jobs are created through the caesar-rest API and the ExecutionBroker API, never here; this router
lists them, reports their phase, quote, parameters, results and errors, and aborts or deletes them.
Our states map onto UWS phases as follows (ABORTED is the planner refusing a task, so an ERROR; a
user's cancel is CANCELED, so ABORTED):

    PENDING→QUEUED  RUNNING→EXECUTING  SUCCESS→COMPLETED  FAILURE, TIMED-OUT, ABORTED→ERROR
    CANCELED→ABORTED

A deleted job keeps its document (the caesar routes still see it) with ``deleted: true``, and is gone
from every UWS route.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from pydantic_xml import BaseXmlModel, element
from vo_models.uws import (
    ErrorSummary,
    Jobs,
    JobSummary,
    Parameter,
    Parameters,
    ResultReference,
    Results,
    ShortJobDescription,
)
from vo_models.uws.types import ErrorType, ExecutionPhase, UWSVersion
from vo_models.xlink import XlinkType

from cirasa.common.events import TERMINAL_STATES, JobState
from cirasa.common.store import Document
from cirasa.gateway import openapi
from cirasa.gateway.archive import contained_file
from cirasa.gateway.auth import ANONYMOUS
from cirasa.gateway.caesar import PREFIX as CAESAR_PREFIX
from cirasa.gateway.dependencies import GatewayDep, UserDep
from cirasa.gateway.documents import Job, plausible_id
from cirasa.gateway.errors import BadRequest, Conflict, GatewayError, MethodNotAllowed, NotFound
from cirasa.gateway.service import Gateway

PREFIX = "/uws"
XML = "application/xml"
MAX_WAIT_S = 60.0
WAIT_POLL_S = 0.1
ALLOW_GET = {"Allow": "GET"}  # on the 405s of what cannot be changed
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

PHASE_OF_STATE: dict[str, ExecutionPhase] = {
    JobState.PENDING.value: ExecutionPhase.QUEUED,
    JobState.RUNNING.value: ExecutionPhase.EXECUTING,
    JobState.SUCCESS.value: ExecutionPhase.COMPLETED,
    JobState.FAILURE.value: ExecutionPhase.ERROR,
    JobState.TIMED_OUT.value: ExecutionPhase.ERROR,
    JobState.ABORTED.value: ExecutionPhase.ERROR,
    JobState.CANCELED.value: ExecutionPhase.ABORTED,
}
# UWS 1.1: a WAIT blocks only while the job is in one of these.
ACTIVE_PHASES = {ExecutionPhase.PENDING, ExecutionPhase.QUEUED, ExecutionPhase.EXECUTING}
# How an error phase is typed: a timed-out job may well succeed with more wall time.
ERROR_TYPES = {JobState.TIMED_OUT.value: ErrorType.TRANSIENT, JobState.CANCELED.value: ErrorType.TRANSIENT}

# The job directory's products (top level only), with their media types. The caesar archive of the
# whole directory is listed as one more result, ``archive``.
PRODUCTS: dict[str, str] = {
    "catalog-*.json": "application/json",
    "catalog-*.csv": "text/csv",
    "catalog-*.vot": "application/x-votable+xml",
    "catalog-*.dat": "text/plain",
    "catalog_fitcomp-*.json": "application/json",
    "catalog_fitcomp-*.dat": "text/plain",
    "ds9-*.reg": "text/plain",
    "plot_*.png": "image/png",
    "result.json": "application/json",
}
ARCHIVE_RESULT = "archive"
JOB_FIELDS = (
    "_id", "user", "app", "job_inputs", "data_inputs", "tag", "submit_date", "state", "status",
    "start_date", "end_date", "resources", "quote", "offer_start",
)  # fmt: skip


class JobParameters(Parameters):
    """A free list of ``<uws:parameter id=...>``.

    vo-models' ``Parameters`` wants one model field per parameter id, known in advance, and its
    constructor regroups what it gets by id into those fields. Our parameters are each app's options,
    so this keeps them as one list and skips that regrouping.
    """

    parameter: list[Parameter] = element(tag="parameter", default_factory=list)

    def __init__(self, **data: Any) -> None:
        BaseXmlModel.__init__(self, **data)


UWSJob = JobSummary[JobParameters]


# --- mapping a job document ------------------------------------------------------------------


def phase_of(job: Mapping[str, Any]) -> ExecutionPhase:
    return PHASE_OF_STATE.get(str(job.get("state")), ExecutionPhase.UNKNOWN)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from a stored ISO string (naive means UTC), or None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def duration_of(job: Mapping[str, Any]) -> int:
    """The wall time of the accepted offer; 0 (UWS: unlimited) until there is one."""
    resources = job.get("resources")
    value = resources.get("duration_s") if isinstance(resources, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def quote_of(job: Mapping[str, Any]) -> datetime | None:
    """The planner's estimated completion; else the best known start plus the granted wall time."""
    quote = parse_time(job.get("quote"))
    if quote is not None:
        return quote
    duration = duration_of(job)
    start = next(
        (t for k in ("start_date", "offer_start", "submit_date") if (t := parse_time(job.get(k)))), None
    )
    return start + timedelta(seconds=duration) if start is not None and duration > 0 else None


def owner_of(job: Mapping[str, Any]) -> str | None:
    """UWS asks for NULL when nobody authenticated, which is what ``anonymous`` means."""
    user = job.get("user")
    return None if not user or user == ANONYMOUS else xml_safe(str(user))


def run_id_of(job: Mapping[str, Any]) -> str | None:
    tag = job.get("tag")
    return None if tag is None or tag == "" else xml_safe(str(tag))


def xml_safe(text: str) -> str:
    """``text`` with what XML 1.0 cannot hold (control characters, lone surrogates) replaced by U+FFFD:
    stored text from before such input was refused must not make a listing fail."""
    return _NOT_XML.sub("\ufffd", text)


def _text(value: Any) -> str:
    return xml_safe(value if isinstance(value, str) else json.dumps(value, default=str))


def parameters_of(job: Mapping[str, Any]) -> JobParameters:
    params = [Parameter(id="app", value=_text(job.get("app", "")))]
    if job.get("data_inputs") not in (None, ""):
        params.append(Parameter(id="data_inputs", value=_text(job["data_inputs"])))
    inputs = job.get("job_inputs")
    if isinstance(inputs, dict):
        params += [
            Parameter(id=_text(str(k)), value=_text(v)) if v is not None else Parameter(id=_text(str(k)))
            for k, v in inputs.items()
        ]
    elif inputs is not None:
        params.append(Parameter(id="job_inputs", value=_text(inputs)))
    return JobParameters(parameter=params)


def error_summary_of(job: Mapping[str, Any]) -> ErrorSummary | None:
    if phase_of(job) not in (ExecutionPhase.ERROR, ExecutionPhase.ABORTED):
        return None
    state = str(job.get("state"))
    return ErrorSummary(
        message=xml_safe(str(job.get("status") or state)),
        type=ERROR_TYPES.get(state, ErrorType.FATAL),
        has_detail=True,
    )


def list_products(gateway: Gateway, job: Job) -> dict[str, tuple[Path, str]]:
    """Product files by name: what the results list shows and the only names served (regular files
    inside the job directory; never a link, whether or not it points inside)."""
    found: dict[str, tuple[Path, str]] = {}
    job_dir = gateway.served_job_dir(job)
    if job_dir is None:
        return found
    for pattern, media_type in PRODUCTS.items():
        for path in sorted(job_dir.glob(pattern)):
            if not path.is_symlink() and (served := contained_file(job_dir, path)) is not None:
                found.setdefault(path.name, (served, media_type))
    return found


# --- the router ------------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["UWS 1.1"])


def error_response(request: Request, exc: GatewayError) -> Response:
    """Plain text with the status code (UWS 1.1 allows plain-text error documents)."""
    return PlainTextResponse(exc.message, status_code=exc.status_code, headers=exc.headers)


def xml(model: BaseXmlModel) -> Response:
    # exclude_unset: optional elements we did not set are left out, while the required-but-nillable
    # ones (ownerId, startTime, endTime, destruction), set explicitly to None, come out as xsi:nil.
    body = model.to_xml(exclude_unset=True, encoding="UTF-8", xml_declaration=True)
    return Response(body, media_type=XML)


def text(value: str) -> Response:
    return PlainTextResponse(value)


async def request_params(request: Request) -> dict[str, list[str]]:
    """Query and form parameters together; UWS parameter names are case-insensitive."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key.upper(), []).append(value)
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=64)
        for key, item in form.multi_items():
            if isinstance(item, str):
                params.setdefault(key.upper(), []).append(item)
    return params


def one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"Parameter {name} given more than once")
    return values[0].strip()


def parse_phase(value: str) -> ExecutionPhase:
    try:
        return ExecutionPhase(value.strip().upper())
    except ValueError:
        allowed = ", ".join(p.value for p in ExecutionPhase)
        raise BadRequest(f"Invalid PHASE {value!r}: expected one of {allowed}") from None


def parse_after(value: str) -> datetime:
    text_value = value.strip()
    if text_value.endswith(("Z", "z")):
        text_value = text_value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text_value)
    except ValueError:
        raise BadRequest(f"Invalid AFTER {value!r}: expected an ISO 8601 date-time (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_last(value: str) -> int:
    try:
        last = int(value)
    except ValueError:
        last = 0
    if last < 1:
        raise BadRequest(f"Invalid LAST {value!r}: expected a positive integer")
    return last


def parse_wait(value: str) -> float:
    """Seconds to block; a negative value means as long as the server allows (UWS 1.1)."""
    try:
        wait = float(value)
    except ValueError:
        wait = math.nan
    if math.isnan(wait):
        raise BadRequest(f"Invalid WAIT {value!r}: expected a number of seconds")
    return MAX_WAIT_S if wait < 0 else min(wait, MAX_WAIT_S)


async def find_job(gateway: Gateway, user: str, job_id: str) -> Job:
    """The caller's job, unless it was deleted through UWS."""
    job = await gateway.find_job(user, job_id) if plausible_id(job_id) else None
    if job is None or job.deleted:
        raise NotFound(f"Job {job_id} not found")
    return job


async def wait_for_change(
    request: Request, gateway: Gateway, job: Job, wait_s: float, only_in: ExecutionPhase | None
) -> Job:
    """Block while the job stays in the active phase it is in now, for at most ``wait_s``."""
    start_phase = phase_of(job.to_doc())
    if wait_s <= 0 or start_phase not in ACTIVE_PHASES or (only_in is not None and only_in != start_phase):
        return job
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(WAIT_POLL_S, left))
        fresh = await gateway.find_job(job.user, job.id)
        if fresh is None or fresh.deleted:
            raise NotFound(f"Job {job.id} was deleted")
        job = fresh
        if phase_of(job.to_doc()) != start_phase:
            return job
        if await request.is_disconnected():
            break
    return job


def job_url(request: Request, job_id: str) -> str:
    return str(request.url_for("uws_job", job_id=job_id))


def results_of(request: Request, gateway: Gateway, job: Job) -> Results:
    """Products only once the job has ended, so nobody fetches a file still being written."""
    if job.state not in TERMINAL_STATES:
        return Results(results=[])
    job_dir = gateway.job_dir(job)
    refs = [
        ResultReference(
            id=name,
            type=XlinkType.SIMPLE,
            href=str(request.url_for("uws_result", job_id=job.id, name=name)),
            size=path.stat().st_size,
            mime_type=media_type,
        )
        for name, (path, media_type) in list_products(gateway, job).items()
    ]
    if job.state != JobState.ABORTED.value and job_dir.is_dir():
        base = str(request.base_url).rstrip("/")
        refs.append(
            ResultReference(
                id=ARCHIVE_RESULT,
                type=XlinkType.SIMPLE,
                href=f"{base}{CAESAR_PREFIX}/job/{job.id}/output",
                mime_type="application/gzip",
            )
        )
    return Results(results=refs)


def summary(request: Request, gateway: Gateway, job: Job) -> UWSJob:
    stored = job.to_doc()
    fields: dict[str, Any] = {
        "job_id": job.id,
        "owner_id": owner_of(stored),
        "phase": phase_of(stored),
        "quote": quote_of(stored),
        "creation_time": parse_time(job.submit_date),
        "start_time": parse_time(job.start_date),
        "end_time": parse_time(job.end_date),
        "execution_duration": duration_of(stored),
        "destruction": None,
        "parameters": parameters_of(stored),
        "results": results_of(request, gateway, job),
        "version": UWSVersion.V1_1,
    }
    if (run_id := run_id_of(stored)) is not None:
        fields["run_id"] = run_id
    if (error := error_summary_of(stored)) is not None:
        fields["error_summary"] = error
    return UWSJob(**fields)


# --- job list -----------------------------------------------------------------------------------


@router.get("/jobs", name="uws_jobs", openapi_extra=openapi.query("PHASE", "AFTER", "LAST"))
async def job_list(request: Request, gateway: GatewayDep, user: UserDep) -> Response:
    params = await request_params(request)
    phases = {parse_phase(v) for v in params.get("PHASE", [])}
    after = parse_after(v) if (v := one(params, "AFTER")) is not None else None
    last = parse_last(v) if (v := one(params, "LAST")) is not None else None
    rows = await listed_jobs(gateway, user, phases, after)
    rows.sort(key=lambda row: row[0], reverse=True)  # newest first, which LAST keeps
    if last is not None:
        rows = rows[:last]
    refs = []
    for created, job in rows:
        ref: dict[str, Any] = {
            "job_id": job["_id"],
            "type": XlinkType.SIMPLE,
            "href": job_url(request, job["_id"]),
            "phase": phase_of(job),
            "owner_id": owner_of(job),
            "creation_time": created,
        }
        if (run_id := run_id_of(job)) is not None:
            ref["run_id"] = run_id
        refs.append(ShortJobDescription(**ref))
    return xml(Jobs(jobref=refs, version=UWSVersion.V1_1))


async def listed_jobs(
    gateway: Gateway, user: str, phases: set[ExecutionPhase], after: datetime | None
) -> list[tuple[datetime, Document]]:
    """The caller's jobs in ``phases`` (all when empty) created after ``after``, with their creation time."""
    query: dict[str, Any] = {"user": user, "deleted": {"$ne": True}}
    if phases and ExecutionPhase.UNKNOWN not in phases:
        query["state"] = {"$in": [s for s, p in PHASE_OF_STATE.items() if p in phases]}
    rows: list[tuple[datetime, Document]] = []
    async for job in gateway.jobs.raw.find(query, {k: 1 for k in JOB_FIELDS}):
        created = parse_time(job.get("submit_date")) or datetime.min.replace(tzinfo=UTC)
        if phases and phase_of(job) not in phases:
            continue
        # Compared as published (to the millisecond), so AFTER=<a listed creationTime> leaves that
        # job out.
        if after is not None and created.replace(microsecond=created.microsecond // 1000 * 1000) <= after:
            continue
        rows.append((created, job))
    return rows


@router.post("/jobs", openapi_extra=openapi.form(PHASE="ignored: jobs are not created here"))
async def create_job() -> Response:
    raise MethodNotAllowed(
        "Jobs are not created through UWS here: submit them with the caesar-rest API "
        f"(POST {CAESAR_PREFIX}/job) or the ExecutionBroker API; they then appear in this list.",
        headers=ALLOW_GET,
    )


# --- one job ------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}", name="uws_job", openapi_extra=openapi.query("WAIT", "PHASE"))
async def job_summary(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    params = await request_params(request)
    wait = parse_wait(v) if (v := one(params, "WAIT")) is not None else 0.0
    only_in = parse_phase(v) if (v := one(params, "PHASE")) is not None else None
    job = await find_job(gateway, user, job_id)
    job = await wait_for_change(request, gateway, job, wait, only_in)
    return xml(await asyncio.to_thread(summary, request, gateway, job))


async def delete(request: Request, gateway: Gateway, user: str, job_id: str) -> Response:
    """Cancel the job if it is still under way and hide it from UWS; caesar-rest still lists it."""
    await gateway.delete_job(user, await find_job(gateway, user, job_id))
    return RedirectResponse(str(request.url_for("uws_jobs")), status_code=303)


@router.delete("/jobs/{job_id}")
async def delete_job(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return await delete(request, gateway, user, job_id)


@router.post("/jobs/{job_id}", openapi_extra=openapi.form(ACTION="DELETE"))
async def post_job(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    action = one(await request_params(request), "ACTION")
    if action is None or action.upper() != "DELETE":
        await find_job(gateway, user, job_id)
        raise BadRequest(f"Invalid ACTION {action!r}: only ACTION=DELETE is supported")
    return await delete(request, gateway, user, job_id)


# --- phase --------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}/phase")
async def get_phase(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return text(phase_of((await find_job(gateway, user, job_id)).to_doc()).value)


@router.post("/jobs/{job_id}/phase", openapi_extra=openapi.form(PHASE="RUN or ABORT"))
async def post_phase(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    wanted = one(await request_params(request), "PHASE")
    job = await find_job(gateway, user, job_id)
    phase = phase_of(job.to_doc())
    if wanted is None or wanted.upper() not in ("RUN", "ABORT"):
        raise BadRequest(f"Invalid PHASE {wanted!r}: expected RUN or ABORT")
    if wanted.upper() == "RUN":
        # Jobs are queued as soon as they are submitted: RUN has nothing left to start.
        if phase not in ACTIVE_PHASES:
            raise Conflict(f"Job {job_id} has already ended ({phase.value}); it cannot be run again")
    elif job.state not in TERMINAL_STATES:
        await gateway.request_cancel(user, job)
    elif phase != ExecutionPhase.ABORTED:
        raise Conflict(f"Job {job_id} has already ended ({phase.value}); nothing to abort")
    return RedirectResponse(job_url(request, job_id), status_code=303)


# --- single-valued properties -------------------------------------------------------------------


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/jobs/{job_id}/quote")
async def get_quote(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return text(iso(quote_of((await find_job(gateway, user, job_id)).to_doc())))


@router.get("/jobs/{job_id}/executionduration")
async def get_duration(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return text(str(duration_of((await find_job(gateway, user, job_id)).to_doc())))


@router.get("/jobs/{job_id}/destruction")
async def get_destruction(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    await find_job(gateway, user, job_id)
    return text("")  # jobs are kept until deleted


@router.get("/jobs/{job_id}/owner")
async def get_owner(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return text(owner_of((await find_job(gateway, user, job_id)).to_doc()) or "")


@router.get("/jobs/{job_id}/error")
async def get_error(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    stored = (await find_job(gateway, user, job_id)).to_doc()
    error = error_summary_of(stored)
    if error is None:
        raise NotFound(f"Job {job_id} has no error (phase {phase_of(stored).value})")
    return text(error.message)


@router.get("/jobs/{job_id}/parameters")
async def get_parameters(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return xml(parameters_of((await find_job(gateway, user, job_id)).to_doc()))


def add_read_only(prop: str, why: str) -> None:
    """``POST /jobs/{job_id}/<prop>``: refused with 405, once the job is known to exist."""

    extra = openapi.form(**{prop.upper(): f"refused: {why}"})

    @router.post(f"/jobs/{{job_id}}/{prop}", name=f"uws_post_{prop}", openapi_extra=extra)
    async def refuse(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
        await find_job(gateway, user, job_id)
        raise MethodNotAllowed(f"{prop} cannot be changed: {why}", headers=ALLOW_GET)


add_read_only("executionduration", "it is the wall time of the offer the job was accepted with")
add_read_only("destruction", "jobs are kept until they are deleted")
add_read_only("parameters", "jobs are queued as soon as they are submitted")


# --- results ------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}/results")
async def get_results(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    job = await find_job(gateway, user, job_id)
    return xml(await asyncio.to_thread(results_of, request, gateway, job))


@router.get("/jobs/{job_id}/results/{name}", name="uws_result")
async def get_result(job_id: str, name: str, gateway: GatewayDep, user: UserDep) -> Response:
    job = await find_job(gateway, user, job_id)
    if job.state not in TERMINAL_STATES or "/" in name or "\\" in name:
        raise NotFound(f"Job {job_id} has no result {name!r}")
    products = await asyncio.to_thread(list_products, gateway, job)
    if name not in products:
        raise NotFound(f"Job {job_id} has no result {name!r}")
    path, media_type = products[name]
    return FileResponse(path, filename=name, media_type=media_type)
