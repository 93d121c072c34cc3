"""Issue 15: a large map found as overlapping tiles, each an ordinary job, and one merged catalogue
that agrees with the whole-map one; bad requests get a clear 4xx and store nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cirasa.finders.catalog import Catalog
from cirasa.finders.compare import match, table_from_catalog
from cirasa.finders.simulation import simulate_sky
from tests.conftest import API, Stack, wait_for

WEB = "/cirasa/api/v1"
BEAM_ARCSEC = 15.0


@pytest.fixture
def big_map(tmp_path: Path) -> Path:
    path = tmp_path / "field_C.fits"
    simulate_sky(path, size=600, density_per_deg2=2500, seed=5)
    return path


async def follow_tiled(stack: Stack, request_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = (await stack.client.get(f"{WEB}/tiled/{request_id}")).json()
        return body if body["state"] in ("SUCCESS", "FAILURE") else None

    return await wait_for(ended, 120, f"tiled request {request_id} to end")


def agreement(reference: Catalog, other: Catalog) -> float:
    """The fraction of ``reference``'s sources with one of ``other``'s within half a beam."""
    pairs, _ = match(table_from_catalog(reference), table_from_catalog(other), BEAM_ARCSEC / 2)
    return len(pairs) / max(len(reference.sources), 1)


async def test_tiles_run_as_jobs_and_their_merged_catalogue_matches_the_whole_map(
    memory_stack: Stack, big_map: Path
) -> None:
    client = memory_stack.client
    file_id = await memory_stack.upload(big_map)
    body = {"data_inputs": file_id, "app": "sep", "job_inputs": {"no-preview": True}, "per_side": 2}
    r = await client.post(f"{WEB}/tiled", json={**body, "overlap_px": 48})
    assert r.status_code == 202, r.text
    tiled = r.json()
    assert tiled["total"] == 4 and tiled["image"] == {
        "file_id": file_id,
        "name": "field_C.fits",
        "width": 600,
        "height": 600,
    }
    early = await client.get(f"{WEB}/tiled/{tiled['id']}/catalogue")
    assert early.status_code in (200, 409)  # 409 while a tile is unfinished, saying which
    whole_id = await memory_stack.submit("sep", file_id, {"no-preview": True})

    done = await follow_tiled(memory_stack, tiled["id"])
    assert done["state"] == "SUCCESS" and done["done"] == 4
    tile_jobs = {t["job_id"] for t in done["tiles"]}
    listed = {j["job_id"]: j for j in (await client.get(f"{API}/jobs")).json()}
    assert all(listed[j]["tag"] == f"tiled:{tiled['id']}" for j in tile_jobs)  # ordinary jobs, tagged
    names = {f["filename_orig"] for f in (await client.get(f"{API}/fileids")).json()}
    assert {f"field_C-tile{i:02d}.fits" for i in range(4)} <= names  # the tiles are the user's files

    merged = Catalog.model_validate((await client.get(f"{WEB}/tiled/{tiled['id']}/catalogue")).json())
    await memory_stack.wait_state(whole_id, {"SUCCESS"})
    whole = Catalog.model_validate((await client.get(f"{API}/job/{whole_id}/sources")).json())
    assert len(whole.sources) > 100
    assert agreement(whole, merged) >= 0.999 and agreement(merged, whole) >= 0.999  # the bar
    assert agreement(merged, merged) == 1.0
    ids = [s.component_id for s in merged.sources]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"per_side": 0}, 400, "per_side"),
        ({"per_side": 16, "overlap_px": 64}, 400, "cannot tile"),
        ({"app": "sleep"}, 400, "not a source finder"),
        ({"app": "nope"}, 400, "not a source finder"),
        ({"job_inputs": {"seedthr": "high"}}, 400, "seedthr"),
        ({"data_inputs": "0" * 32}, 404, "not found"),
        ({"colour": "blue"}, 400, "colour"),
    ],
)
async def test_a_bad_tiled_request_is_refused_and_stores_nothing(
    memory_stack: Stack, big_map: Path, change: dict[str, Any], status: int, says: str
) -> None:
    client = memory_stack.client
    file_id = await memory_stack.upload(big_map)
    body = {"data_inputs": file_id, "app": "sep", "per_side": 2, **change}
    r = await client.post(f"{WEB}/tiled", json=body)
    assert r.status_code == status and says in r.text, r.text
    assert len((await client.get(f"{API}/fileids")).json()) == 1  # no tile was kept
    assert (await client.get(f"{API}/jobs")).json() == []


async def test_a_png_or_an_unknown_request_is_refused(memory_stack: Stack, tmp_path: Path) -> None:
    client = memory_stack.client
    png = tmp_path / "sky.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    up = await client.post(f"{API}/upload", files={"file": (png.name, png.read_bytes())})
    r = await client.post(f"{WEB}/tiled", json={"data_inputs": up.json()["uuid"], "app": "sep"})
    assert r.status_code == 400 and "not a FITS image" in r.text
    assert (await client.get(f"{WEB}/tiled/{'1' * 32}")).status_code == 404
    assert (await client.get(f"{WEB}/tiled/{'1' * 32}/catalogue")).status_code == 404
