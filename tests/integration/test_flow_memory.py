"""The whole flow in one process with the in-memory bus and store (what ``cirasa dev`` runs)."""

from __future__ import annotations

from pathlib import Path

from cirasa.planner.ledger import stored_bookings
from tests.conftest import API, Stack


async def test_sep_job_end_to_end(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sep", file_id, {"seedthr": 5})
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=60)
    assert status["state"] == "SUCCESS", status
    assert status["_seen"][0] in ("PENDING", "RUNNING") and "RUNNING" in status["_seen"]
    assert status["exit_code"] == 0
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    assert len(list(job_dir.glob("catalog-*.json"))) == 1
    sources = (await memory_stack.client.get(f"{API}/job/{job_id}/sources")).json()
    assert sources["finder"] == "sep" and len(sources["sources"]) >= 10
    preview = (await memory_stack.client.get(f"{API}/job/{job_id}/preview")).json()
    assert preview["image"].startswith("iVBOR")  # base64 of a PNG


async def test_jobs_beyond_capacity_wait_then_run(memory_stack: Stack, fits_image: Path) -> None:
    """Two cores, five one-core jobs: they queue in the planner and all finish; none is refused."""
    file_id = await memory_stack.upload(fits_image)
    jobs = [await memory_stack.submit("sep", file_id, {"seedthr": 6}) for _ in range(5)]
    for job_id in jobs:
        status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=120)
        assert status["state"] == "SUCCESS", status
    planner = memory_stack.services["planner"]
    assert await stored_bookings(planner.db, "local") == []


async def test_job_too_big_for_every_platform_is_aborted(memory_stack: Stack, fits_image: Path) -> None:
    memory_stack.settings.platforms[0].max_duration_s = 10
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sep", file_id, {"no-preview": True})
    status = await memory_stack.wait_state(job_id, {"ABORTED"}, timeout_s=10)
    assert "needs 1800 s of wall time" in status["status"]


async def test_failed_app_reports_its_exit_code(memory_stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "flat.fits"
    import numpy as np
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((8, 8), dtype="float32")).writeto(bad)  # no WCS: the finder refuses it
    file_id = await memory_stack.upload(bad)
    job_id = await memory_stack.submit("sep", file_id, {"no-preview": True})
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE"}, timeout_s=60)
    assert status["state"] == "FAILURE" and status["exit_code"] == 2
    assert "return code 2" in status["status"]
