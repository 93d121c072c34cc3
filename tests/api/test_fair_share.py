"""Fairness (issue 9): one user's queue of jobs does not make everyone else wait behind it. Waiting
auto-accepted jobs are placed oldest first *per user*, the user running the fewest jobs going first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cirasa.common.settings import AuthSettings, GatewaySettings, PlatformConfig, Settings
from tests.api.test_auth import AUDIENCE, ISSUER, bearer, jwks_url, token
from tests.conftest import API, Stack, start_stack, stop_stack, wait_for

__all__ = ["jwks_url"]  # the module-scoped JWKS server fixture


@pytest.fixture
async def shared(settings: Settings, jwks_url: str) -> AsyncIterator[Stack]:
    settings.gateway = GatewaySettings(
        auth=AuthSettings(enabled=True, issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)
    )
    settings.platforms = [PlatformConfig(name="local", cores=2, memory_gib=4, max_duration_s=600)]
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


async def test_a_second_user_is_not_queued_behind_the_first(shared: Stack, fits_image: Path) -> None:
    alice, bob = bearer(token("alice@inaf.it")), bearer(token("bob@inaf.it"))

    async def submit(who: dict[str, str], file_id: str) -> str:
        body = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 1.5}}
        r = await shared.client.post(f"{API}/job", json=body, headers=who)
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    async def upload(who: dict[str, str]) -> str:
        r = await shared.client.post(
            f"{API}/upload", headers=who, files={"file": ("s.fits", fits_image.read_bytes())}
        )
        return str(r.json()["uuid"])

    a_file, b_file = await upload(alice), await upload(bob)
    alices = [await submit(alice, a_file) for _ in range(5)]
    bobs = await submit(bob, b_file)

    async def started(job_id: str, who: dict[str, str]) -> str:
        async def probe() -> str | None:
            status = (await shared.client.get(f"{API}/job/{job_id}/status", headers=who)).json()
            assert status["state"] in ("PENDING", "RUNNING", "SUCCESS"), status
            if status["state"] != "SUCCESS":
                return None
            jobs = (await shared.client.get(f"{API}/jobs", headers=who)).json()
            return next(str(j["start_date"]) for j in jobs if j["job_id"] == job_id)

        return str(await wait_for(probe, 60, f"job {job_id} to succeed"))

    bob_start = await started(bobs, bob)
    last = await started(alices[-1], alice)
    # oldest first would start bob's job after all five of alice's; fair share starts it as soon as one
    # of her first two ends, well before her last (which waits for two more rounds)
    assert bob_start < last, (bob_start, last)
