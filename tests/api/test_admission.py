"""Admission (issue 14, status lag): a gateway takes submissions no faster than the planner answers.
Beyond ``admission_limit`` unanswered submissions the next one waits for room, then gets a 503 with
Retry-After and leaves nothing behind; once the planner answers, submissions flow again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cirasa.cli.runtime import build_service
from cirasa.common.settings import GatewaySettings, Settings
from tests.conftest import API, Stack, start_stack, stop_stack

LIMIT = 2


@pytest.fixture
async def admitting(settings: Settings) -> AsyncIterator[Stack]:
    settings.gateway = GatewaySettings(admission_limit=LIMIT, admission_wait_s=0.3)
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


async def test_submissions_beyond_what_the_planner_answers_wait_then_get_a_503(
    admitting: Stack, fits_image: Path
) -> None:
    file_id = await admitting.upload(fits_image)
    body = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 0.1}}
    await admitting.services["planner"].stop()  # nobody answers now
    for _ in range(LIMIT):
        assert (await admitting.client.post(f"{API}/job", json=body)).status_code == 202
    started = asyncio.get_running_loop().time()
    refused = await admitting.client.post(f"{API}/job", json=body)
    assert refused.status_code == 503, refused.text
    assert asyncio.get_running_loop().time() - started >= 0.3  # it waited for room first
    assert refused.headers["retry-after"] == "1" and "busy" in refused.json()["status"]
    assert len((await admitting.client.get(f"{API}/jobs")).json()) == LIMIT  # nothing stored

    planner = build_service("planner", admitting.settings, admitting.memory)
    admitting.services["planner"] = planner
    await planner.start()  # it answers what waited in its queue: room again
    answers = await asyncio.gather(
        *(admitting.client.post(f"{API}/job", json=body) for _ in range(2 * LIMIT))
    )
    assert [r.status_code for r in answers] == [202] * (2 * LIMIT)  # they waited their turn
