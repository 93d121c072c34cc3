"""caesar-rest compatible REST API under ``/caesar/api/v1.0`` (research/caesar-rest.md §9).

Deliberate deviations, each listed in docs/caesar-compat.md: option bounds and types are enforced;
unknown options are reported back (``ignored_options``); ``GET`` on the destructive routes
(``/delete``, ``/cancel``) is refused with 405; uploads are checked by content, not only extension.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask

from cirasa.common.events import TERMINAL_STATES, JobState, as_utc
from cirasa.finders.registry import APPS, OptionError, get_app
from cirasa.gateway import idempotency, openapi
from cirasa.gateway.archive import build_job_archive, contained_file, first_file
from cirasa.gateway.bodies import has_control, load_json
from cirasa.gateway.dependencies import GatewayDep, UserDep, read_bounded
from cirasa.gateway.documents import Job, plausible_id
from cirasa.gateway.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from cirasa.gateway.service import Gateway, NewJob
from cirasa.gateway.uploads import ALLOWED_FORMATS, ReceivedFile, content_matches, receive_upload

PREFIX = "/caesar/api/v1.0"
MAX_JOB_BODY = 256 * 1024
NOT_READY_STATES = {JobState.PENDING.value, JobState.RUNNING.value, JobState.ABORTED.value, "STARTED"}
STATUS_KEYS = ("job_id", "pid", "state", "status", "exit_code", "elapsed_time", "tag")
UPLOAD_KEYS = ("filename_orig", "tag", "format", "size", "uuid", "date")
CAESAR_JOB = "caesar:job"  # the route an Idempotency-Key was used on


def operation_id(route: APIRoute) -> str:
    """FastAPI's operation id from the route's name, path and method. Routes that answer GET and POST
    are declared once per method: a route with two methods gives both operations one id."""
    name = re.sub(r"\W", "_", route.name + route.path_format)
    return f"{name}_{sorted(route.methods or ())[0].lower()}"


router = APIRouter(prefix=PREFIX, generate_unique_id_function=operation_id)


def error_response(request: Request, exc: GatewayError) -> Response:
    """caesar-rest's error form: the message as ``status``, after the reply keys the route repeats."""
    return JSONResponse(
        {**exc.fields, "status": exc.message}, status_code=exc.status_code, headers=exc.headers
    )


@contextmanager
def blank_reply(fields: dict[str, Any]) -> Iterator[None]:
    """caesar-rest's errors repeat the keys of the reply the route would have given: ``fields`` as
    they are when the error is raised."""
    try:
        yield
    except GatewayError as exc:
        exc.fields = {**fields, **exc.fields}
        raise


# --- files ----------------------------------------------------------------------------------


@router.post("/upload", openapi_extra=openapi.request_body(openapi.UPLOAD, "multipart/form-data"))
async def upload(request: Request, gateway: GatewayDep, user: UserDep) -> Response:
    with blank_reply(dict.fromkeys(UPLOAD_KEYS, "")):
        received = await receive_upload(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            gateway.settings.data_dir / ".incoming",
            gateway.settings.gateway.max_upload_mib * 1024 * 1024,
        )
        fmt = checked_format(received)
    file = await gateway.register_file(user, received, fmt)
    return JSONResponse(
        {
            "filename_orig": file.filename_orig,
            "tag": file.tag,
            "format": fmt,
            "size": file.filesize,
            "uuid": file.fileid,
            "date": file.filedate,
            "status": "File uploaded with success",
        }
    )


def checked_format(received: ReceivedFile) -> str:
    """The file's format from its extension, when allowed and its content agrees (else discarded)."""
    filename = Path(received.filename).name
    fmt = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if fmt not in ALLOWED_FORMATS:
        received.discard()
        raise UnsupportedMediaType(
            f"File format not allowed, allowed file types are: {{{'|'.join(ALLOWED_FORMATS)}}}"
        )
    if not content_matches(received.tmp_path, fmt):
        received.discard()
        raise UnsupportedMediaType(f"File content is not a valid {fmt.upper()} file (checked its header)")
    return fmt


@router.get("/fileids")
async def fileids(gateway: GatewayDep, user: UserDep) -> Response:
    return JSONResponse(as_json(await gateway.list_files(user)))


@router.get("/download", openapi_extra=openapi.query("uuid"))
@router.post(
    "/download",
    openapi_extra=openapi.query("uuid") | openapi.form(uuid="the file's uuid, when not in the query"),
)
async def download_redirect(request: Request, user: UserDep) -> Response:
    file_id = request.query_params.get("uuid")
    if request.method == "POST" and not file_id:
        form = await request.form(max_files=0, max_fields=4)
        value = form.get("uuid")
        file_id = value if isinstance(value, str) else None
    if not file_id:
        raise BadRequest("Missing uuid parameter!")
    return RedirectResponse(f"{PREFIX}/download/{file_id}", status_code=302)


async def stored_file(gateway: Gateway, user: str, file_id: str) -> Path:
    """The path of the user's file ``file_id``, or 404."""
    file = await gateway.find_file(user, file_id) if plausible_id(file_id) else None
    data_dir = gateway.settings.data_dir
    path = contained_file(data_dir, data_dir / file.relpath) if file else None
    if path is None:
        raise NotFound(f"File with uuid {file_id} not found on the system!")
    return path


@router.get("/download/{file_id}")  # one route per method: each its own operationId
@router.post("/download/{file_id}")
async def download(file_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    path = await stored_file(gateway, user, file_id)
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")


@router.get("/delete/{file_id}")  # one route per method: each its own operationId
@router.post("/delete/{file_id}")
async def delete(request: Request, file_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    if request.method == "GET":
        raise MethodNotAllowed("Use POST to delete a file: a GET must not change anything")
    file = await gateway.find_file(user, file_id) if plausible_id(file_id) else None
    if file is None or not await gateway.delete_file(user, file):
        raise NotFound(f"File with uuid {file_id} not found on the system!")
    return JSONResponse({"status": "File deleted and removed from DB"})


# --- apps -----------------------------------------------------------------------------------


@router.get("/apps")
async def apps() -> Response:
    return JSONResponse({"apps": list(APPS)})


@router.get("/app/{app_name}/describe")
async def describe(app_name: str) -> Response:
    app = get_app(app_name)
    if app is None:
        raise BadRequest(f"Unknown app {app_name}!")
    return JSONResponse(app.describe())


# --- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    """A job request as read: what to submit, and the options it ignores."""

    new: NewJob
    ignored: list[str]


@router.post("/job", openapi_extra=openapi.request_body(openapi.CAESAR_JOB, "application/json"))
async def submit(request: Request, gateway: GatewayDep, user: UserDep) -> Response:
    """202 once the job is stored; with an ``Idempotency-Key``, a retry gets the same job back."""
    reply: dict[str, Any] = {"state": "ABORTED", "app": "", "job_id": "", "submit_date": ""}
    with blank_reply(reply):
        body = await read_job_body(request)
        key = idempotency.key_of(request)
        made_id = await gateway.idempotency.lookup(key, user, CAESAR_JOB, body)
        made = await gateway.find_job(user, made_id) if made_id else None
        if made is not None:
            return accepted_reply(made, ignored_options(made))
        app_name = body.get("app")
        if not app_name or not isinstance(app_name, str):
            raise BadRequest("No app name found in request!")
        reply["app"] = app_name
        parsed = await read_job_request(gateway, user, app_name, body)
        job_id = await gateway.idempotency.target_for(key, user, CAESAR_JOB, body)
    job = await gateway.submit_job(user, parsed.new, job_id)
    return accepted_reply(job, parsed.ignored)


def accepted_reply(job: Job, ignored: list[str]) -> Response:
    accepted = {
        "app": job.app,
        "job_id": job.job_id,
        "job_inputs": job.job_inputs,
        "data_inputs": job.data_inputs,
        "tag": job.tag,
        "state": job.state,
        "status": job.status,
        "submit_date": job.submit_date,
    }
    if ignored:
        accepted["ignored_options"] = ignored
    return JSONResponse(accepted, status_code=202)


def ignored_options(job: Job) -> list[str]:
    """What the first request's reply listed as ignored, for a retry's."""
    app = get_app(job.app)
    try:
        return app.validate(job.job_inputs).ignored if app else []
    except OptionError:
        return []


async def read_job_body(request: Request) -> dict[str, Any]:
    raw = await read_bounded(request, MAX_JOB_BODY)
    if raw is None:
        raise PayloadTooLarge(f"Request body too large (limit {MAX_JOB_BODY // 1024} KiB)")
    try:
        body = load_json(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body:
        raise BadRequest("Invalid request data!")
    return body


async def read_job_request(gateway: Gateway, user: str, app_name: str, body: dict[str, Any]) -> JobRequest:
    """Check a job request in caesar-rest's order, so the first problem is the one reported."""
    job_inputs = body.get("job_inputs")
    if not job_inputs:
        raise BadRequest("No job inputs field found in request!")
    if "data_inputs" not in body:
        raise BadRequest("No data inputs field found in request!")
    data_inputs = body["data_inputs"]
    file = await gateway.find_file(user, data_inputs) if plausible_id(data_inputs) else None
    if file is None:
        raise BadRequest("Cannot find file corresponding to given data input uid!")
    app = get_app(app_name)
    if app is None:
        raise BadRequest(f"App {app_name} not known or supported")
    try:
        validated = app.validate(job_inputs)
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    walltime = body.get("walltime_s")
    if walltime is not None and (
        isinstance(walltime, bool)
        or not isinstance(walltime, int)
        or not 1 <= walltime <= app.resources.duration_s
    ):
        raise BadRequest(f"Option walltime_s must be an integer between 1 and {app.resources.duration_s}")
    tag = body.get("tag", "")
    if not isinstance(tag, str | int | float) or (isinstance(tag, str) and len(tag) > 256):
        raise BadRequest("Option tag must be a string of at most 256 characters")
    if isinstance(tag, str) and has_control(tag):
        raise BadRequest("Option tag must not contain control characters")
    new = NewJob(app, validated.values, job_inputs, file, tag, walltime)
    return JobRequest(new, validated.ignored)


@router.get("/jobs")
async def jobs(gateway: GatewayDep, user: UserDep) -> Response:
    return JSONResponse(as_json(await gateway.list_jobs(user)))


@router.get("/job/{job_id}/status")
async def status(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    job = await gateway.find_job(user, job_id)
    if job is None:
        blank = {k: "" for k in STATUS_KEYS if k != "status"}
        raise NotFound(f"Job {job_id} not found for user {user}!", fields=blank)
    return JSONResponse({k: getattr(job, k) for k in STATUS_KEYS})


@router.get("/job/{job_id}/cancel")  # one route per method: each its own operationId
@router.post("/job/{job_id}/cancel")
async def cancel(request: Request, job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    if request.method == "GET":
        raise MethodNotAllowed("Use POST to cancel a job: a GET must not change anything")
    job = await gateway.find_job(user, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found for user {user}!")
    if job.state in TERMINAL_STATES:
        return JSONResponse(
            {"status": f"Job {job_id} already completed with state {job.state}, nothing to be canceled."}
        )
    await gateway.request_cancel(user, job)
    for _ in range(50):  # a short wait makes the common case look synchronous to old clients
        await asyncio.sleep(0.1)
        current = await gateway.find_job(user, job_id)
        if current is not None and current.state in TERMINAL_STATES:
            return JSONResponse({"status": f"Job canceled and status updated in DB (state={current.state})"})
    return JSONResponse({"status": "Cancel requested; the job will be CANCELED shortly"})


# --- outputs --------------------------------------------------------------------------------


async def finished_job(gateway: Gateway, user: str, job_id: str) -> Job:
    job = await gateway.find_job(user, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found for user {user}!", fields={"job_id": job_id})
    if job.state in NOT_READY_STATES:
        raise NotReady(
            f"Job {job_id} not yet completed (state={job.state}), output not available",
            fields={"job_id": job_id},
        )
    return job


def as_json(stored: Any) -> Any:
    """Stored documents as JSON can say them: datetimes (``cancel_requested_at``...) in ISO-8601, UTC."""
    return jsonable_encoder(stored, custom_encoder={datetime: lambda moment: as_utc(moment).isoformat()})


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a finder's non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def missing_output(job_id: str) -> NotFound:
    """caesar-rest answered 500; a product that is not there is a 404 here (docs/caesar-compat.md)."""
    return NotFound(f"Cannot find desired output for job {job_id}!", fields={"job_id": job_id})


async def product(gateway: Gateway, user: str, job_id: str, pattern: str) -> Path:
    """The first file of a finished job's directory that matches ``pattern`` and may be served."""
    job_dir = gateway.served_job_dir(await finished_job(gateway, user, job_id))
    found = first_file(job_dir, pattern) if job_dir else None
    if found is None:
        raise missing_output(job_id)
    return found


@router.get("/job/{job_id}/output")
async def output(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    job_dir = gateway.served_job_dir(await finished_job(gateway, user, job_id))
    if job_dir is None:
        raise missing_output(job_id)
    archive = await asyncio.to_thread(build_job_archive, job_dir, f"job_{job_id}")
    return FileResponse(
        archive,
        filename=f"job_{job_id}.tar.gz",
        media_type="application/gzip",
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )


def add_product_route(route: str, pattern: str, media_type: str | None) -> None:
    """``GET /job/{job_id}/<route>``: the product as a file of ``media_type``, or None: as JSON."""

    @router.get(f"/job/{{job_id}}/{route}", name=route)
    async def handler(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
        path = await product(gateway, user, job_id, pattern)
        if media_type is not None:
            return FileResponse(path, filename=path.name, media_type=media_type)
        try:
            return JSONResponse(finite(json.loads(path.read_text())))
        except ValueError:
            raise NotFound(f"Output of job {job_id} is not valid JSON", fields={"job_id": job_id}) from None


add_product_route("sources", "catalog-*.json", None)
add_product_route("source-components", "catalog_fitcomp-*.json", None)
add_product_route("output-sources", "catalog-*.dat", "text/plain")
add_product_route("output-components", "catalog_fitcomp-*.dat", "text/plain")
add_product_route("output-plot", "plot_*.png", "image/png")


@router.get("/job/{job_id}/preview")
async def preview(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    path = await product(gateway, user, job_id, "plot_*.png")
    return JSONResponse({"status": "", "image": base64.b64encode(path.read_bytes()).decode()})


# --- accounting -----------------------------------------------------------------------------


@router.get("/accounting")
async def accounting(gateway: GatewayDep, user: UserDep) -> Response:
    usage = await gateway.usage_for(user)
    if usage is None:
        raise NotFound(f"Failed to get accounting info for user {user} (nothing recorded yet)")
    return JSONResponse(usage)


@router.get("/appstats")
async def appstats(gateway: GatewayDep, _user: UserDep) -> Response:
    """The platform's totals: any signed-in user may see them (with auth on, nobody else)."""
    usage = await gateway.usage_for("*")
    if usage is None:
        raise NotFound("Failed to get app stats (nothing recorded yet)")
    return JSONResponse(usage)
