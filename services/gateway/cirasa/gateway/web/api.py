"""``/cirasa/api/v1``: what the web page and the CLI need beyond the caesar-rest, UWS and
ExecutionBroker faces — apps with whether they can run here, job summaries and details, log tails,
any product by name, the sky image with its sources, deleting a job, comparing two jobs' catalogues.

Errors take caesar-rest's form (``{"status": message}``), so one client reads every face the same way.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from cirasa.backends.app_fit import app_unfit
from cirasa.common.events import TERMINAL_STATES
from cirasa.finders.catalog import Catalog
from cirasa.finders.compare import DEFAULT_RADIUS_ARCSEC, CompareError, compare, merge, table_from_catalog
from cirasa.finders.registry import APPS, App
from cirasa.gateway.archive import first_file
from cirasa.gateway.caesar import finite, stored_file
from cirasa.gateway.dependencies import GatewayDep, UserDep
from cirasa.gateway.documents import Job, plausible_id
from cirasa.gateway.errors import BadRequest, Conflict, NotFound
from cirasa.gateway.service import Gateway
from cirasa.gateway.web import jobs_view
from cirasa.gateway.web.sky_image import NotAnImage, SkyImage, render

PREFIX = "/cirasa/api/v1"
CATALOGUE = "catalog-*.json"

router = APIRouter(prefix=PREFIX, tags=["web page and CLI"])


def app_entry(app: App, gateway: Gateway) -> dict[str, Any]:
    reasons = [app_unfit(app, platform) for platform in gateway.settings.platforms]
    runnable = any(reason is None for reason in reasons)
    return {
        "name": app.name,
        "description": app.description,
        "runnable": runnable,
        "reason": None if runnable else "; ".join(r for r in reasons if r) or "no platform is configured",
        "diagnostic": app.diagnostic,
        "options": app.describe(),
    }


@router.get("/apps")
async def apps(gateway: GatewayDep, _user: UserDep) -> Response:
    """Every app, whether some platform here can run it and, when none can, why (the sandbox probe
    runs a process once: in a thread)."""
    entries = await asyncio.to_thread(lambda: [app_entry(app, gateway) for app in APPS.values()])
    return JSONResponse({"apps": entries})


@router.get("/jobs")
async def jobs(gateway: GatewayDep, user: UserDep) -> Response:
    return JSONResponse(await jobs_view.job_summaries(gateway, user))


async def users_job(gateway: Gateway, user: str, job_id: str) -> Job:
    job = await gateway.find_job(user, job_id) if plausible_id(job_id) else None
    if job is None or job.deleted:
        raise NotFound(f"Job {job_id} not found for user {user}!")
    return job


@router.get("/jobs/{job_id}")
async def job_detail(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    job = await users_job(gateway, user, job_id)
    names = await jobs_view.file_names(gateway, user, [str(job.data_inputs)])
    detail = jobs_view.summary(job.to_doc(), names)
    detail |= {"job_inputs": job.job_inputs, "resources": job.resources, "quote": job.quote}
    detail["products"] = jobs_view.products(gateway.served_job_dir(job))
    return JSONResponse(finite(detail))


@router.delete("/jobs/{job_id}")
async def delete_job(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    """Cancel the job if it is still under way, and take it off the user's lists."""
    job = await users_job(gateway, user, job_id)
    cancelled = job.state not in TERMINAL_STATES
    await gateway.delete_job(user, job)
    return JSONResponse({"status": "Job cancelled and deleted" if cancelled else "Job deleted"})


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse)
async def log(
    job_id: str,
    gateway: GatewayDep,
    user: UserDep,
    stream: Annotated[str, Query(description="stdout or stderr")] = "stderr",
    tail: Annotated[int, Query(ge=0, le=10_000, description="how many lines, from the end")] = 200,
) -> Response:
    if stream not in jobs_view.LOG_STREAMS:
        raise BadRequest(f"Unknown log stream {stream!r}: use stdout or stderr")
    job = await users_job(gateway, user, job_id)
    text = jobs_view.log_tail(gateway.served_job_dir(job), stream, tail)
    return PlainTextResponse(text or "")


@router.get("/jobs/{job_id}/products/{name}")
async def product(job_id: str, name: str, gateway: GatewayDep, user: UserDep) -> Response:
    job = await users_job(gateway, user, job_id)
    path = jobs_view.product_path(gateway.served_job_dir(job), name)
    if path is None:
        raise NotFound(f"Job {job_id} has no product {name!r}")
    return FileResponse(path, filename=path.name)


def job_catalogue(gateway: Gateway, job: Job) -> Catalog | None:
    directory = gateway.served_job_dir(job)
    path = first_file(directory, CATALOGUE) if directory else None
    if path is None:
        return None
    try:
        return Catalog.model_validate(json.loads(path.read_text()))
    except ValueError:
        return None


async def finished_catalogue(gateway: Gateway, user: str, job_id: str) -> tuple[Job, Catalog]:
    job = await users_job(gateway, user, job_id)
    if job.state not in TERMINAL_STATES:
        raise Conflict(f"Job {job_id} not yet completed (state={job.state}), no catalogue yet")
    catalogue = await asyncio.to_thread(job_catalogue, gateway, job)
    if catalogue is None:
        raise NotFound(f"Job {job_id} made no catalogue")
    return job, catalogue


@router.get("/jobs/{job_id}/sky")
async def sky(job_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    """What the viewer draws: the input image's URL and size, and the catalogue when there is one."""
    job = await users_job(gateway, user, job_id)
    catalogue = await asyncio.to_thread(job_catalogue, gateway, job)
    file_id = str(job.data_inputs)
    image = await sky_image(gateway, user, file_id)
    return JSONResponse(
        finite(
            {
                "image_url": f"{PREFIX}/files/{file_id}/image.png",
                "width": image.width,
                "height": image.height,
                "step": image.step,
                "catalogue": catalogue.model_dump(mode="json") if catalogue else None,
            }
        )
    )


async def sky_image(gateway: Gateway, user: str, file_id: str) -> SkyImage:
    path = await stored_file(gateway, user, file_id)
    try:
        return await asyncio.to_thread(render, path)
    except NotAnImage as exc:
        raise BadRequest(f"File {file_id} cannot be shown: {exc}") from None


@router.get("/files/{file_id}/image.png")
async def file_image(file_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    image = await sky_image(gateway, user, file_id)
    headers = {"Cache-Control": "private, max-age=3600", "X-Pixel-Step": str(image.step)}
    return Response(image.png, media_type="image/png", headers=headers)


@router.get("/compare")
async def compare_jobs(
    gateway: GatewayDep,
    user: UserDep,
    a: Annotated[str, Query(description="the first job's id")],
    b: Annotated[str, Query(description="the second job's id (the reference)")],
    radius_arcsec: Annotated[float, Query(gt=0, le=3600)] = DEFAULT_RADIUS_ARCSEC,
) -> Response:
    """Two jobs' catalogues matched on the sky: the scores of ``a`` against ``b`` and the merged list."""
    catalogues = [await finished_catalogue(gateway, user, job_id) for job_id in (a, b)]
    tables = [table_from_catalog(cat, f"{job.app}:{job.id[:8]}") for job, cat in catalogues]
    try:
        scores = compare(tables[0], tables[1], radius_arcsec, snr_min=0.0)
        merged = merge(tables, [Path(f"{job.id}.json") for job, _ in catalogues], radius_arcsec)
    except CompareError as exc:
        raise BadRequest(str(exc)) from None
    body = {"a": a, "b": b, "scores": scores.as_dict(), "merged": merged.model_dump(mode="json")}
    return JSONResponse(finite(body))
