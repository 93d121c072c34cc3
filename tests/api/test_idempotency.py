"""Issue 13: once a job is written it is accepted (even when the publish after the write fails), and
``Idempotency-Key`` makes a retried submission return the same job instead of a second one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cirasa.common.bus import Bus
from cirasa.common.events import Event
from tests.api.test_broker import app_request
from tests.conftest import API, Stack, wait_for


@contextmanager
def broker_down(bus: Bus) -> Iterator[list[Event]]:
    """Every publish on ``bus`` fails (as when the broker drops connections); yields what was tried."""
    tried: list[Event] = []
    publish = bus.publish

    async def failing(event: Event) -> None:
        tried.append(event)
        raise ConnectionError("broker connection dropped")

    bus.publish = failing  # type: ignore[method-assign]
    try:
        yield tried
    finally:
        bus.publish = publish  # type: ignore[method-assign]


def job_body(file_id: str, seconds: float = 0.1) -> dict[str, Any]:
    return {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": seconds}}


async def test_a_stored_job_is_accepted_when_the_publish_fails_and_runs_later(
    memory_stack: Stack, fits_image: Path
) -> None:
    file_id = await memory_stack.upload(fits_image)
    gateway = memory_stack.services["gateway"]
    with broker_down(gateway.bus) as tried:
        r = await memory_stack.client.post(f"{API}/job", json=job_body(file_id))
        assert tried, "the request did try to publish"
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=30)
    assert status["state"] == "SUCCESS"  # the outbox sweep delivered the proposal


async def test_a_direct_execution_is_accepted_when_the_publish_fails(
    memory_stack: Stack, fits_image: Path, monkeypatch: Any
) -> None:
    from cirasa.gateway.broker import routes

    monkeypatch.setattr(routes, "ANSWER_TIMEOUT_S", 0.3)
    file_id = await memory_stack.upload(fits_image)
    with broker_down(memory_stack.services["gateway"].bus):
        r = await memory_stack.client.post("/sessions", json=app_request(file_id))
    assert r.status_code == 202, r.text  # not a 5xx: the proposal is stored and will be answered
    location = r.headers["location"]
    assert "/offersets/" in location

    async def answered() -> dict[str, Any] | None:
        body = (await memory_stack.client.get(location)).json()
        return body if body.get("result") == "YES" else None

    await wait_for(answered, 20, "the stored proposal to be answered")


async def test_a_retry_with_the_same_key_returns_the_same_job(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    headers = {"Idempotency-Key": "retry-1"}
    first, second = await asyncio.gather(
        memory_stack.client.post(f"{API}/job", json=job_body(file_id), headers=headers),
        memory_stack.client.post(f"{API}/job", json=job_body(file_id), headers=headers),
    )
    again = await memory_stack.client.post(f"{API}/job", json=job_body(file_id), headers=headers)
    assert [r.status_code for r in (first, second, again)] == [202, 202, 202]
    assert first.json()["job_id"] == second.json()["job_id"] == again.json()["job_id"]
    jobs = (await memory_stack.client.get(f"{API}/jobs")).json()
    assert len(jobs) == 1
    other = await memory_stack.client.post(
        f"{API}/job", json=job_body(file_id), headers={"Idempotency-Key": "retry-2"}
    )
    assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]


async def test_the_same_key_with_another_body_is_refused(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    headers = {"Idempotency-Key": "k-1"}
    r = await memory_stack.client.post(f"{API}/job", json=job_body(file_id), headers=headers)
    assert r.status_code == 202
    r = await memory_stack.client.post(f"{API}/job", json=job_body(file_id, 0.2), headers=headers)
    assert r.status_code == 422
    assert "Idempotency-Key" in r.json()["status"]
    assert len((await memory_stack.client.get(f"{API}/jobs")).json()) == 1


async def test_a_refused_request_does_not_hold_its_key(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    headers = {"Idempotency-Key": "k-2"}
    bad = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": -1}}
    assert (await memory_stack.client.post(f"{API}/job", json=bad, headers=headers)).status_code == 400
    r = await memory_stack.client.post(f"{API}/job", json=job_body(file_id), headers=headers)
    assert r.status_code == 202


async def test_a_retried_direct_execution_returns_the_same_session(
    memory_stack: Stack, fits_image: Path
) -> None:
    file_id = await memory_stack.upload(fits_image)
    headers = {"Idempotency-Key": "session-1"}
    first = await memory_stack.client.post("/sessions", json=app_request(file_id), headers=headers)
    second = await memory_stack.client.post("/sessions", json=app_request(file_id), headers=headers)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    sessions = memory_stack.services["gateway"].db["sessions"]
    assert await sessions.count_documents({}) == 1
    other = await memory_stack.client.post(
        "/offersets", json=app_request(file_id), headers=headers
    )  # the same key on another endpoint is another request
    assert other.status_code == 422
