"""caesar-rest compatible REST API under ``/caesar/api/v1.0`` (research/caesar-rest.md §9).

Deliberate deviations, each listed in docs/caesar-compat.md: option bounds and types are enforced;
unknown options are reported back (``ignored_options``); ``GET`` on the destructive routes
(``/delete``, ``/cancel``) is refused with 405; uploads are checked by content, not only extension.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from cirasa.common.events import TERMINAL_STATES, JobState
from cirasa.finders.registry import APPS, OptionError, get_app
from cirasa.gateway.archive import build_job_archive
from cirasa.gateway.auth import current_user
from cirasa.gateway.service import Gateway, NewJob
from cirasa.gateway.uploads import ALLOWED_FORMATS, UploadError, content_matches, receive_upload

PREFIX = "/caesar/api/v1.0"
MAX_JOB_BODY = 256 * 1024
_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
NOT_READY_STATES = {JobState.PENDING.value, JobState.RUNNING.value, JobState.ABORTED.value, "STARTED"}
STATUS_KEYS = ("job_id", "pid", "state", "status", "exit_code", "elapsed_time", "tag")


def error(code: int, status: str, **extra: Any) -> JSONResponse:
    return JSONResponse({**extra, "status": status}, status_code=code)


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def build_router() -> APIRouter:
    r = APIRouter(prefix=PREFIX)

    # --- files ----------------------------------------------------------------------------

    @r.post("/upload")
    async def upload(request: Request, user: str = Depends(current_user)) -> Response:
        gw = gateway_of(request)
        empty = {"filename_orig": "", "tag": "", "format": "", "size": "", "uuid": "", "date": ""}
        max_bytes = gw.settings.gateway.max_upload_mib * 1024 * 1024
        try:
            received = await receive_upload(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                request.stream(),
                gw.settings.data_dir / ".incoming",
                max_bytes,
            )
        except UploadError as exc:
            return error(exc.status_code, exc.message, **empty)
        filename = Path(received.filename).name
        fmt = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if fmt not in ALLOWED_FORMATS:
            received.discard()
            return error(
                415,
                f"File format not allowed, allowed file types are: {{{'|'.join(ALLOWED_FORMATS)}}}",
                **empty,
            )
        if not content_matches(received.tmp_path, fmt):
            received.discard()
            return error(415, f"File content is not a valid {fmt.upper()} file (checked its header)", **empty)
        doc = await gw.register_file(user, received, fmt)
        return JSONResponse(
            {
                "filename_orig": doc["filename_orig"],
                "tag": doc["tag"],
                "format": fmt,
                "size": doc["filesize"],
                "uuid": doc["fileid"],
                "date": doc["filedate"],
                "status": "File uploaded with success",
            }
        )

    @r.get("/fileids")
    async def fileids(request: Request, user: str = Depends(current_user)) -> Response:
        return JSONResponse(await gateway_of(request).list_files(user))

    @r.api_route("/download", methods=["GET", "POST"])
    async def download_redirect(request: Request, user: str = Depends(current_user)) -> Response:
        file_id = request.query_params.get("uuid")
        if request.method == "POST" and not file_id:
            form = await request.form(max_files=0, max_fields=4)
            value = form.get("uuid")
            file_id = value if isinstance(value, str) else None
        if not file_id:
            return error(400, "Missing uuid parameter!")
        return RedirectResponse(f"{PREFIX}/download/{file_id}", status_code=302)

    @r.api_route("/download/{file_id}", methods=["GET", "POST"])
    async def download(request: Request, file_id: str, user: str = Depends(current_user)) -> Response:
        gw = gateway_of(request)
        doc = await gw.find_file(user, file_id) if _ID.match(file_id) else None
        path = gw.settings.data_dir / doc["relpath"] if doc else None
        if doc is None or path is None or not path.is_file():
            return error(404, f"File with uuid {file_id} not found on the system!")
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")

    @r.api_route("/delete/{file_id}", methods=["GET", "POST"])
    async def delete(request: Request, file_id: str, user: str = Depends(current_user)) -> Response:
        if request.method == "GET":
            return error(405, "Use POST to delete a file: a GET must not change anything")
        gw = gateway_of(request)
        doc = await gw.find_file(user, file_id) if _ID.match(file_id) else None
        if doc is None or not await gw.delete_file(user, doc):
            return error(404, f"File with uuid {file_id} not found on the system!")
        return JSONResponse({"status": "File deleted and removed from DB"})

    # --- apps -----------------------------------------------------------------------------

    @r.get("/apps")
    async def apps() -> Response:
        return JSONResponse({"apps": list(APPS)})

    @r.get("/app/{app_name}/describe")
    async def describe(app_name: str) -> Response:
        app = get_app(app_name)
        if app is None:
            return error(400, f"Unknown app {app_name}!")
        return JSONResponse(app.describe())

    # --- jobs -----------------------------------------------------------------------------

    @r.post("/job")
    async def submit(request: Request, user: str = Depends(current_user)) -> Response:
        gw = gateway_of(request)
        base = {"state": "ABORTED", "app": "", "job_id": "", "submit_date": ""}
        raw = await _read_bounded(request, MAX_JOB_BODY)
        if raw is None:
            return error(413, f"Request body too large (limit {MAX_JOB_BODY // 1024} KiB)", **base)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body:
            return error(400, "Invalid request data!", **base)
        app_name = body.get("app")
        if not app_name or not isinstance(app_name, str):
            return error(400, "No app name found in request!", **base)
        base["app"] = app_name
        job_inputs = body.get("job_inputs")
        if not job_inputs:
            return error(400, "No job inputs field found in request!", **base)
        if "data_inputs" not in body:
            return error(400, "No data inputs field found in request!", **base)
        data_inputs = body["data_inputs"]
        file = (
            await gw.find_file(user, data_inputs)
            if isinstance(data_inputs, str) and _ID.match(data_inputs)
            else None
        )
        if file is None:
            return error(400, "Cannot find file corresponding to given data input uid!", **base)
        app = get_app(app_name)
        if app is None:
            return error(400, f"App {app_name} not known or supported", **base)
        try:
            validated = app.validate(job_inputs)
        except OptionError as exc:
            return error(400, str(exc), **base)
        walltime = body.get("walltime_s")
        if walltime is not None and (
            isinstance(walltime, bool)
            or not isinstance(walltime, int)
            or not 1 <= walltime <= app.resources.duration_s
        ):
            return error(
                400, f"Option walltime_s must be an integer between 1 and {app.resources.duration_s}", **base
            )
        tag = body.get("tag", "")
        if not isinstance(tag, str | int | float) or (isinstance(tag, str) and len(tag) > 256):
            return error(400, "Option tag must be a string of at most 256 characters", **base)
        doc = await gw.submit_job(user, NewJob(app, validated.values, job_inputs, file, tag, walltime))
        reply = {
            "app": app_name,
            "job_id": doc["job_id"],
            "job_inputs": job_inputs,
            "data_inputs": data_inputs,
            "tag": tag,
            "state": "PENDING",
            "status": doc["status"],
            "submit_date": doc["submit_date"],
        }
        if validated.ignored:
            reply["ignored_options"] = validated.ignored
        return JSONResponse(reply, status_code=202)

    @r.get("/jobs")
    async def jobs(request: Request, user: str = Depends(current_user)) -> Response:
        return JSONResponse(await gateway_of(request).list_jobs(user))

    @r.get("/job/{job_id}/status")
    async def status(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
        job = await gateway_of(request).find_job(user, job_id)
        if job is None:
            blank: dict[str, Any] = {k: "" for k in STATUS_KEYS if k != "status"}
            return error(404, f"Job {job_id} not found for user {user}!", **blank)
        return JSONResponse({k: job.get(k, "") for k in STATUS_KEYS})

    @r.api_route("/job/{job_id}/cancel", methods=["GET", "POST"])
    async def cancel(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
        if request.method == "GET":
            return error(405, "Use POST to cancel a job: a GET must not change anything")
        gw = gateway_of(request)
        job = await gw.find_job(user, job_id)
        if job is None:
            return error(404, f"Job {job_id} not found for user {user}!")
        if job["state"] in TERMINAL_STATES:
            return JSONResponse(
                {
                    "status": f"Job {job_id} already completed with state {job['state']}, "
                    "nothing to be canceled."
                }
            )
        await gw.request_cancel(user, job)
        for _ in range(50):  # a short wait makes the common case look synchronous to old clients
            await asyncio.sleep(0.1)
            job = await gw.find_job(user, job_id)
            if job is not None and job["state"] in TERMINAL_STATES:
                return JSONResponse(
                    {"status": f"Job canceled and status updated in DB (state={job['state']})"}
                )
        return JSONResponse({"status": "Cancel requested; the job will be CANCELED shortly"})

    # --- outputs --------------------------------------------------------------------------

    async def finished_job(
        request: Request, job_id: str, user: str
    ) -> tuple[dict[str, Any] | None, Response | None]:
        job = await gateway_of(request).find_job(user, job_id)
        if job is None:
            return None, error(404, f"Job {job_id} not found for user {user}!", job_id=job_id)
        if job["state"] in NOT_READY_STATES:
            return None, error(
                202,
                f"Job {job_id} not yet completed (state={job['state']}), output not available",
                job_id=job_id,
            )
        return job, None

    async def product(
        request: Request, job_id: str, user: str, pattern: str
    ) -> tuple[Path | None, Response | None]:
        job, early = await finished_job(request, job_id, user)
        if job is None:
            return None, early
        matches = sorted(gateway_of(request).job_dir(job).glob(pattern))
        if not matches:
            return None, error(500, f"Cannot find desired output for job {job_id}!", job_id=job_id)
        return matches[0], None

    @r.get("/job/{job_id}/output")
    async def output(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
        job, early = await finished_job(request, job_id, user)
        if job is None:
            assert early is not None
            return early
        job_dir = gateway_of(request).job_dir(job)
        if not job_dir.is_dir():
            return error(500, f"Cannot find desired output for job {job_id}!", job_id=job_id)
        archive = await asyncio.to_thread(build_job_archive, job_dir, f"job_{job_id}")
        return FileResponse(
            archive,
            filename=f"job_{job_id}.tar.gz",
            media_type="application/gzip",
            background=BackgroundTask(archive.unlink, missing_ok=True),
        )

    def json_product(route: str, pattern: str) -> None:
        @r.get(f"/job/{{job_id}}/{route}", name=route)
        async def handler(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
            path, early = await product(request, job_id, user, pattern)
            if path is None:
                assert early is not None
                return early
            try:
                return JSONResponse(json.loads(path.read_text()))
            except ValueError:
                return error(500, f"Output of job {job_id} is not valid JSON", job_id=job_id)

    def file_product(route: str, pattern: str, media_type: str) -> None:
        @r.get(f"/job/{{job_id}}/{route}", name=route)
        async def handler(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
            path, early = await product(request, job_id, user, pattern)
            if path is None:
                assert early is not None
                return early
            return FileResponse(path, filename=path.name, media_type=media_type)

    json_product("sources", "catalog-*.json")
    json_product("source-components", "catalog_fitcomp-*.json")
    file_product("output-sources", "catalog-*.dat", "text/plain")
    file_product("output-components", "catalog_fitcomp-*.dat", "text/plain")
    file_product("output-plot", "plot_*.png", "image/png")

    @r.get("/job/{job_id}/preview")
    async def preview(request: Request, job_id: str, user: str = Depends(current_user)) -> Response:
        path, early = await product(request, job_id, user, "plot_*.png")
        if path is None:
            assert early is not None
            return early
        return JSONResponse({"status": "", "image": base64.b64encode(path.read_bytes()).decode()})

    # --- accounting -----------------------------------------------------------------------

    @r.get("/accounting")
    async def accounting(request: Request, user: str = Depends(current_user)) -> Response:
        usage = await gateway_of(request).usage_for(user)
        if usage is None:
            return error(404, f"Failed to get accounting info for user {user} (nothing recorded yet)")
        return JSONResponse(usage)

    @r.get("/appstats")
    async def appstats(request: Request) -> Response:
        usage = await gateway_of(request).usage_for("*")
        if usage is None:
            return error(404, "Failed to get app stats (nothing recorded yet)")
        return JSONResponse(usage)

    return r


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
