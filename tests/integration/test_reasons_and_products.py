"""Issue 10, in the whole flow (in memory, real finder processes): a FAILURE says why, a PENDING job says
what it waits for, products carry the image's own name, and a product a job did not make is a 404."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cirasa.common.settings import PlatformConfig, Settings
from cirasa.gateway.uws import UWSJob
from tests.api.test_broker import app_request
from tests.conftest import API, Stack, start_stack, stop_stack, wait_for

ENDED = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}
PRODUCT_ROUTES = (
    "sources",
    "source-components",
    "output-sources",
    "output-components",
    "output-plot",
    "preview",
)


async def test_a_finder_run_on_a_png_fails_saying_why(memory_stack: Stack, tmp_path: Path) -> None:
    png = tmp_path / "sky.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # the upload accepts it: it is a PNG
    file_id = await memory_stack.upload(png)
    job_id = await memory_stack.submit("sep", file_id, {"no-preview": True})
    status = await memory_stack.wait_state(job_id, ENDED)
    assert (status["state"], status["exit_code"]) == ("FAILURE", 2)
    assert status["status"].startswith("sep_finder: error: not a readable FITS file: sky.png ("), status
    assert status["status"].endswith(" (process terminated with return code 2)")
    uws = UWSJob.from_xml((await memory_stack.client.get(f"/uws/jobs/{job_id}")).content)
    assert uws.error_summary is not None and uws.error_summary.message == status["status"]
    error = await memory_stack.client.get(f"/uws/jobs/{job_id}/error")
    assert (error.status_code, error.text) == (200, status["status"])


async def test_products_are_named_after_the_image(
    memory_stack: Stack, fits_image: Path, tmp_path: Path
) -> None:
    named = tmp_path / "field B.fits"
    shutil.copy(fits_image, named)
    job_id = await memory_stack.submit("sep", await memory_stack.upload(named), {"seedthr": 5})
    assert (await memory_stack.wait_state(job_id, ENDED))["state"] == "SUCCESS"
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    products = {p.name for p in job_dir.iterdir() if p.is_file() and not p.is_symlink()}
    assert {"catalog-field_B.json", "catalog-field_B.csv", "catalog-field_B.vot", "ds9-field_B.reg",
            "plot_field_B.png"} <= products  # fmt: skip
    sources = await memory_stack.client.get(f"{API}/job/{job_id}/sources")
    assert sources.status_code == 200 and sources.json()["image"] == "field_B.fits"
    plot = await memory_stack.client.get(f"{API}/job/{job_id}/output-plot")
    assert plot.status_code == 200 and 'filename="plot_field_B.png"' in plot.headers["content-disposition"]
    for route in ("source-components", "output-sources", "output-components"):  # sep makes none of these
        missing = await memory_stack.client.get(f"{API}/job/{job_id}/{route}")
        assert missing.status_code == 404, (route, missing.text)
        assert missing.json()["status"] == f"Cannot find desired output for job {job_id}!"


@pytest.mark.parametrize("route", PRODUCT_ROUTES)
async def test_a_job_without_products_answers_404_on_every_product_route(
    memory_stack: Stack, fits_image: Path, route: str
) -> None:
    job_id = await memory_stack.submit("sleep", await memory_stack.upload(fits_image), {"seconds": 0.1})
    assert (await memory_stack.wait_state(job_id, ENDED))["state"] == "SUCCESS"
    r = await memory_stack.client.get(f"{API}/job/{job_id}/{route}")
    assert r.status_code == 404, r.text
    assert r.json()["status"] == f"Cannot find desired output for job {job_id}!"


async def test_a_job_held_back_by_offers_says_so(settings: Settings, fits_image: Path) -> None:
    settings.platforms = [
        PlatformConfig(
            name="local", cores=2, memory_gib=4, max_duration_s=3600, offer_ttl_s=60, offer_share=1
        )
    ]
    stack = await start_stack(settings, memory=True)
    try:
        file_id = await stack.upload(fits_image)
        offered = await stack.client.post("/offersets", json=app_request(file_id, cores=(2, 2)))
        assert offered.status_code in (200, 303), offered.text
        job_id = await stack.submit("sleep", file_id, {"seconds": 0.1})
        expected = "Waiting for 1 core on local, held by 1 unaccepted offer until "

        async def waiting() -> dict[str, str] | None:
            status = await stack.status(job_id)
            return status if status["status"].startswith(expected) else None

        status = await wait_for(waiting, 10, "the waiting reason")
        assert status["state"] == "PENDING" and "UTC; queued since " in status["status"]
        listed = (await stack.client.get(f"{API}/jobs")).json()
        assert [j["status"] for j in listed if j["job_id"] == job_id] == [status["status"]]
    finally:
        await stop_stack(stack)
