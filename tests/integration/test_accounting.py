"""Accounting from events: per-user usage and platform stats in caesar-rest's field names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import API, Stack, wait_for


async def test_usage_counts_every_outcome(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    ok = await memory_stack.submit("sleep", file_id, {"seconds": 0.3})
    failed = await memory_stack.submit("sleep", file_id, {"seconds": 0.1, "exit-code": 3})
    aborted = await memory_stack.submit("cutex", file_id, {"seedthr": 5})
    for job_id, state in ((ok, "SUCCESS"), (failed, "FAILURE"), (aborted, "ABORTED")):
        assert (await memory_stack.wait_state(job_id, {state}))["state"] == state

    async def settled() -> dict[str, Any] | None:
        r = await memory_stack.client.get(f"{API}/accounting")
        usage = r.json() if r.status_code == 200 else {}
        return usage if usage.get("njobs_aborted") == 1 and usage.get("njobs_completed") == 1 else None

    usage = await wait_for(settled, 20, "the usage to count all three jobs")
    assert usage["njobs"] == 3 and usage["njobs_failed"] == 1
    assert usage["njobs_pending"] == 0 and usage["njobs_running"] == 0
    assert usage["job_completed_runtime"] >= 0.3 and usage["job_runtime"] >= usage["job_completed_runtime"]
    assert usage["datasize"] > 0 and usage["jobsize"] > 0
    stats = (await memory_stack.client.get(f"{API}/appstats")).json()
    assert stats["nusers"] == 1 and stats["njobs"] == 3
    assert stats["avg_completed_job_runtime"] == stats["job_completed_runtime"]


async def test_broker_proposals_count_only_once_accepted(memory_stack: Stack, fits_image: Path) -> None:
    from cirasa.gateway.broker import kinds

    file_id = await memory_stack.upload(fits_image)
    request = {
        "executable": {
            "kind": kinds.CIRASA_APP,
            "app": "sleep",
            "options": {"seconds": 0.1},
            "inputs": [file_id],
        }
    }
    offers = (await memory_stack.client.post("/offersets", json=request)).json()["offers"]
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(job_id, {"SUCCESS"})

    async def njobs(n: int) -> dict[str, Any] | None:
        r = await memory_stack.client.get(f"{API}/accounting")
        usage = r.json() if r.status_code == 200 else {}
        return usage if usage.get("njobs") == n and usage.get("njobs_pending") == 0 else None

    assert (await wait_for(lambda: njobs(1), 20, "one job counted"))["njobs_completed"] == 1
    accepted = await memory_stack.client.post(
        f"/sessions/{offers[0]['meta']['uuid']}",
        json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
    )
    assert accepted.status_code == 200
    assert (await wait_for(lambda: njobs(2), 30, "the accepted session counted"))["njobs_completed"] == 2
