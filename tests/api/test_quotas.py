"""Per-user quotas (issue 9): atomic under concurrent requests, a 429 with Retry-After for what frees
by itself, a 403 for what only the user can free, and a refused request changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cirasa.common.settings import GatewaySettings, QuotaSettings, Settings
from tests.conftest import API, Stack, start_stack, stop_stack

JOBS_ALLOWED = 3


@pytest.fixture
async def limited(settings: Settings, fits_image: Path) -> AsyncIterator[Stack]:
    size = fits_image.stat().st_size
    settings.gateway = GatewaySettings(
        quotas=QuotaSettings(active_jobs=JOBS_ALLOWED, stored_gib=(2.5 * size) / 2**30, retry_after_s=7)
    )
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


async def test_concurrent_submissions_get_exactly_the_quota(limited: Stack, fits_image: Path) -> None:
    file_id = await limited.upload(fits_image)
    body = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 30}}
    answers = await asyncio.gather(*(limited.client.post(f"{API}/job", json=body) for _ in range(10)))
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code == 429]
    assert len(accepted) == JOBS_ALLOWED and len(refused) == 10 - JOBS_ALLOWED
    assert all(r.headers["retry-after"] == "7" and "at most 3 jobs" in r.json()["status"] for r in refused)
    listed = (await limited.client.get(f"{API}/jobs")).json()
    assert len(listed) == JOBS_ALLOWED  # a refused submission left nothing behind

    # a job that ends gives its slot back
    first = accepted[0].json()["job_id"]
    assert (await limited.client.post(f"{API}/job/{first}/cancel")).status_code == 200
    await limited.wait_state(first, {"CANCELED"})
    again = await limited.client.post(f"{API}/job", json=body)
    assert again.status_code == 202, again.text


async def test_storage_quota_is_a_hard_limit_until_files_are_deleted(
    limited: Stack, fits_image: Path
) -> None:
    first = await limited.upload(fits_image)
    await limited.upload(fits_image)
    r = await limited.client.post(f"{API}/upload", files={"file": ("third.fits", fits_image.read_bytes())})
    assert r.status_code == 403 and "GiB of files per user" in r.json()["status"], r.text
    assert len((await limited.client.get(f"{API}/fileids")).json()) == 2
    stored = [p for p in limited.settings.data_dir.rglob("*.fits")]
    assert len(stored) == 2  # the refused upload was not kept
    assert (await limited.client.post(f"{API}/delete/{first}")).status_code == 200
    r = await limited.client.post(f"{API}/upload", files={"file": ("third.fits", fits_image.read_bytes())})
    assert r.status_code == 200, r.text


async def test_recount_repairs_counters_left_by_a_crash(limited: Stack, fits_image: Path) -> None:
    gateway = limited.services["gateway"]
    quotas = gateway.quotas  # type: ignore[attr-defined]
    await limited.upload(fits_image)
    await quotas.counters.update({"_id": "anonymous"}, {"$set": {"active_jobs": 99, "stored_bytes": 10**15}})
    await quotas.recount()
    counts = await quotas.counters.get("anonymous")
    assert counts.active_jobs == 0 and counts.stored_bytes == fits_image.stat().st_size
