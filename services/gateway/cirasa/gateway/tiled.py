"""Tile-parallel finding: one request on a large image becomes overlapping tiles, each an ordinary job
the planner places wherever there is room, and one catalogue merged from theirs.

``POST /cirasa/api/v1/tiled`` splits an uploaded FITS image into ``per_side`` x ``per_side`` tiles
overlapping by ``overlap_px`` (``cirasa.finders.tiling``), stores each tile as a file of the user's
(so quotas and deletion apply to it as to an upload) and submits one job per tile, tagged with the
request. ``GET .../tiled/{id}`` follows the tiles' jobs; once all have succeeded,
``GET .../tiled/{id}/catalogue`` merges their catalogues, each source kept by the one tile whose core
holds it, so the overlaps give no duplicates.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirasa.common.events import JobState, new_id, utcnow
from cirasa.common.store.documents import Documents
from cirasa.finders.catalog import Catalog
from cirasa.finders.registry import OptionError, get_app
from cirasa.finders.tiling import ALIGN_PX, Tile, image_size, merge_tiles, plan_tiles, write_tile
from cirasa.gateway.dependencies import GatewayDep, UserDep
from cirasa.gateway.documents import GatewayDocument, StoredFile, plausible_id
from cirasa.gateway.errors import BadRequest, Conflict, NotFound
from cirasa.gateway.service import Gateway, NewJob
from cirasa.gateway.uploads import ReceivedFile
from cirasa.gateway.web.api import PREFIX, job_catalogue

TILED = "tiled"
router = APIRouter(prefix=f"{PREFIX}/tiled", tags=["web page and CLI"])


class TiledBody(BaseModel):
    """What a client sends: the image, the finder and its options, and how to split."""

    model_config = ConfigDict(extra="forbid")

    data_inputs: str = Field(description="the uploaded FITS image's file id")
    app: str
    job_inputs: dict[str, Any] = Field(default_factory=dict, description="the finder's options")
    per_side: int = Field(2, ge=1, le=16, description="tiles per side: per_side² jobs")
    overlap_px: int = Field(64, ge=0, le=4096, description="pixels each tile reaches into its neighbours")
    tag: str = Field("", max_length=256)


class TileJob(BaseModel):
    index: int
    row: int
    col: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the whole image, overlap included
    core: tuple[int, int, int, int]  # the part this tile owns
    file_id: str
    job_id: str

    def tile(self) -> Tile:
        x0, y0, x1, y1 = self.box
        return Tile(self.index, self.row, self.col, x0, y0, x1, y1, self.core)


class TiledRequest(GatewayDocument):
    id: str = Field(alias="_id")
    user: str
    file_id: str
    image_name: str
    app: str
    job_inputs: dict[str, Any]
    per_side: int
    overlap_px: int
    width: int
    height: int
    tag: str = ""
    tiles: list[TileJob]
    created_at: str


def requests_of(gateway: Gateway) -> Documents[TiledRequest]:
    return Documents(gateway.db[TILED], TiledRequest)


def read_body(raw: Any) -> TiledBody:
    try:
        return TiledBody.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadRequest(f"invalid tiled request: {where}") from None


@router.post("", status_code=202)
async def submit_tiled(gateway: GatewayDep, user: UserDep, raw: Any = Body(...)) -> Response:
    """Split the image, store the tiles, submit one job each; 202 with the request and its jobs."""
    body = read_body(raw)
    app = get_app(body.app)
    if app is None or app.diagnostic or app.untrusted:
        raise BadRequest(f"App {body.app} is not a source finder that tiles can run")
    try:
        options = app.validate(body.job_inputs).values
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    file = await gateway.find_file(user, body.data_inputs) if plausible_id(body.data_inputs) else None
    if file is None:
        raise NotFound(f"File {body.data_inputs} not found")
    if file.fileext != "fits":
        raise BadRequest(f"File {file.filename_orig} is not a FITS image: only FITS images are tiled")
    source = gateway.settings.data_dir / file.relpath
    try:
        width, height = await asyncio.to_thread(image_size, source)
        tiles = plan_tiles(width, height, body.per_side, body.overlap_px, ALIGN_PX)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot tile {file.filename_orig}: {exc}") from exc
    stored = await store_tiles(gateway, user, file, source, tiles)
    request_id = new_id()
    jobs = [
        TileJob(
            index=t.index,
            row=t.row,
            col=t.col,
            box=(t.x0, t.y0, t.x1, t.y1),
            core=t.core,
            file_id=f.id,
            job_id=new_id(),
        )
        for t, f in zip(tiles, stored, strict=True)
    ]
    doc = TiledRequest(
        id=request_id,
        user=user,
        file_id=file.id,
        image_name=file.filename_orig,
        app=app.name,
        job_inputs=body.job_inputs,
        per_side=body.per_side,
        overlap_px=body.overlap_px,
        width=width,
        height=height,
        tag=body.tag,
        tiles=jobs,
        created_at=utcnow().isoformat(),
    )
    await requests_of(gateway).insert(doc)
    tag = f"tiled:{request_id}"
    for job, tile_file in zip(jobs, stored, strict=True):
        new = NewJob(app, options, body.job_inputs, tile_file, tag)
        await gateway.submit_job(user, new, job.job_id)
    return JSONResponse(await describe(gateway, doc), status_code=202)


async def store_tiles(
    gateway: Gateway, user: str, file: StoredFile, source: Path, tiles: list[Tile]
) -> list[StoredFile]:
    """Each tile written and stored as the user's file; on any failure none is kept."""
    stem = Path(file.filename_orig).stem or "image"
    stored: list[StoredFile] = []
    try:
        for tile in tiles:
            folder = Path(tempfile.mkdtemp(prefix="cirasa-tile-", dir=gateway.settings.data_dir))
            path = await asyncio.to_thread(write_tile, source, tile, folder / "tile.fits")
            received = ReceivedFile(
                path, f"{stem}-tile{tile.index:02d}.fits", path.stat().st_size, f"tile of {file.id}"
            )
            stored.append(await gateway.register_file(user, received, "fits"))
    except BaseException:
        for done in stored:
            await gateway.delete_file(user, done)
        raise
    return stored


async def describe(gateway: Gateway, doc: TiledRequest) -> dict[str, Any]:
    """The request with each tile's job as it stands, and the state of the whole."""
    tiles = []
    for tile in doc.tiles:
        job = await gateway.find_job(doc.user, tile.job_id)
        tiles.append(
            {
                **tile.model_dump(mode="json"),
                "state": job.state if job else "NOT SUBMITTED",
                "status": job.status if job else "the tile's job was never stored",
            }
        )
    states = [t["state"] for t in tiles]
    return {
        "id": doc.id,
        "state": overall_state(states),
        "app": doc.app,
        "job_inputs": doc.job_inputs,
        "image": {"file_id": doc.file_id, "name": doc.image_name, "width": doc.width, "height": doc.height},
        "per_side": doc.per_side,
        "overlap_px": doc.overlap_px,
        "tag": doc.tag,
        "done": sum(s == JobState.SUCCESS.value for s in states),
        "total": len(states),
        "tiles": tiles,
        "created_at": doc.created_at,
    }


def overall_state(states: list[str]) -> str:
    """SUCCESS when every tile succeeded; FAILURE as soon as one ended otherwise; else RUNNING or PENDING."""
    if all(s == JobState.SUCCESS.value for s in states):
        return JobState.SUCCESS.value
    if any(s not in (JobState.PENDING.value, JobState.RUNNING.value, JobState.SUCCESS.value) for s in states):
        return JobState.FAILURE.value
    return (
        JobState.RUNNING.value if any(s != JobState.PENDING.value for s in states) else JobState.PENDING.value
    )


async def users_request(gateway: Gateway, user: str, request_id: str) -> TiledRequest:
    doc = await requests_of(gateway).find_one({"_id": request_id, "user": user})
    if doc is None:
        raise NotFound(f"Tiled request {request_id} not found")
    return doc


@router.get("/{request_id}")
async def tiled_status(request_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    return JSONResponse(await describe(gateway, await users_request(gateway, user, request_id)))


@router.get("/{request_id}/catalogue")
async def tiled_catalogue(request_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    """The tiles' catalogues merged (409 until every tile's job has succeeded)."""
    doc = await users_request(gateway, user, request_id)
    parts: list[tuple[Tile, Catalog]] = []
    for tile in doc.tiles:
        job = await gateway.find_job(user, tile.job_id)
        if job is None or job.state != JobState.SUCCESS.value:
            state = job.state if job else "not submitted"
            raise Conflict(
                f"Tile {tile.index} (job {tile.job_id}) is {state}: the catalogue needs every tile"
            )
        catalogue = await asyncio.to_thread(job_catalogue, gateway, job)
        if catalogue is None:
            raise NotFound(f"Tile {tile.index} (job {tile.job_id}) made no catalogue")
        parts.append((tile.tile(), catalogue))
    merged = await asyncio.to_thread(merge_tiles, parts, doc.image_name)
    return JSONResponse(merged.model_dump(mode="json"))
