"""The IVOA ExecutionBroker API: offers, reject/accept, sessions followed to the end, YAML, errors, expiry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cirasa.common.settings import PlatformConfig, Settings
from cirasa.gateway.broker import kinds
from cirasa.planner.ledger import stored_bookings
from tests.conftest import API, Stack, start_stack, stop_stack, wait_for

YAML = {"content-type": "application/yaml", "accept": "application/yaml"}


@pytest.fixture
async def broker_stack(settings: Settings) -> AsyncIterator[Stack]:
    settings.platforms = [
        # these tests take whole platforms in offers: no per-user share (test_offer_share has one)
        PlatformConfig(
            name="alpha", cores=2, memory_gib=4, max_duration_s=3600, offer_ttl_s=30, offer_share=1
        ),
        PlatformConfig(
            name="beta", cores=1, memory_gib=2, max_duration_s=3600, offer_ttl_s=30, offer_share=1
        ),
    ]
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


def app_request(
    file_id: str,
    app: str = "sleep",
    options: dict[str, Any] | None = None,
    cores: tuple[int, int] = (1, 1),
    duration: str = "PT10M",
) -> dict[str, Any]:
    return {
        "executable": {
            "kind": kinds.CIRASA_APP,
            "meta": {"name": "my finder run"},
            "app": app,
            "options": options or {"seconds": 0.2},
            "inputs": [file_id],
        },
        "compute": {
            "kind": kinds.SIMPLE_COMPUTE,
            "cores": {"min": cores[0], "max": cores[1]},
            "memory": {"min": 1, "max": 1},
        },
        "schedule": {"requested": {"duration": duration}},
    }


async def update(stack: Stack, session_id: str, value: str, headers: dict[str, str] | None = None) -> Any:
    body = {"kind": "uri:enum-value-update", "path": "phase", "value": value}
    if headers:
        return await stack.client.post(
            f"/sessions/{session_id}", content=yaml.safe_dump(body), headers=headers
        )
    return await stack.client.post(f"/sessions/{session_id}", json=body)


async def follow(
    stack: Stack,
    session_id: str,
    phases: set[str],
    headers: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await stack.client.get(f"/sessions/{session_id}", headers=headers or {})
        body = yaml.safe_load(r.text) if headers else r.json()
        return body if body["phase"] in phases else None

    return await wait_for(probe, timeout_s, f"session {session_id} to reach {phases}")


async def test_json_client_rejects_one_accepts_another_and_gets_the_catalogue(
    broker_stack: Stack, fits_image: Path
) -> None:
    file_id = await broker_stack.upload(fits_image)
    r = await broker_stack.client.post("/offersets", json=app_request(file_id, "sep", {"seedthr": 5}))
    assert r.status_code == 303, r.text
    offerset = r.json()
    assert r.headers["location"].endswith(f"/offersets/{offerset['meta']['uuid']}")
    assert offerset["kind"] == kinds.OFFERSET and offerset["result"] == "YES"
    offers = offerset["offers"]
    assert {o["meta"]["name"].split(":")[0] for o in offers} == {"alpha", "beta"}
    for offer in offers:
        assert offer["kind"] == kinds.SIMPLE_SESSION and offer["phase"] == "OFFERED" and offer["expires"]
        assert offer["compute"]["kind"] == kinds.SIMPLE_COMPUTE and offer["compute"]["cores"]["min"] == 1
        assert "/" in offer["schedule"]["available"]["start"]
        assert {
            "kind": "uri:enum-value-option",
            "path": "phase",
            "values": ["ACCEPTED", "REJECTED", "CANCELLED"],
        } in offer["meta"]["options"]
    first, second = (o["meta"]["uuid"] for o in offers)
    rejected = await update(broker_stack, first, "REJECTED")
    assert rejected.status_code == 200 and rejected.json()["phase"] == "REJECTED"
    accepted = await update(broker_stack, second, "ACCEPTED")
    assert accepted.status_code == 200 and accepted.json()["phase"] in ("ACCEPTED", "PREPARING", "RUNNING")
    done = await follow(broker_stack, second, {"COMPLETED", "FAILED"})
    assert done["phase"] == "COMPLETED"
    again = await update(broker_stack, first, "ACCEPTED")
    assert again.status_code == 409 and "REJECTED" in again.json()["message"]
    sources = await broker_stack.client.get(f"{API}/job/{second}/sources")
    assert sources.status_code == 200 and len(sources.json()["sources"]) >= 10


async def test_accepting_releases_the_siblings(broker_stack: Stack, fits_image: Path) -> None:
    file_id = await broker_stack.upload(fits_image)
    offers = (await broker_stack.client.post("/offersets", json=app_request(file_id))).json()["offers"]
    assert len(offers) == 2
    chosen, sibling = offers[0]["meta"]["uuid"], offers[1]["meta"]["uuid"]
    assert (await update(broker_stack, chosen, "ACCEPTED")).status_code == 200
    sib = (await broker_stack.client.get(f"/sessions/{sibling}")).json()
    assert sib["phase"] == "REJECTED"
    planner = broker_stack.services["planner"]
    holders = [
        b.holder for p in planner.settings.platforms for b in await stored_bookings(planner.db, p.name)
    ]
    assert sibling not in holders
    await follow(broker_stack, chosen, {"COMPLETED"})


async def test_yaml_client_and_direct_execution(broker_stack: Stack, fits_image: Path) -> None:
    file_id = await broker_stack.upload(fits_image)
    r = await broker_stack.client.post(
        "/offersets", content=yaml.safe_dump(app_request(file_id)), headers=YAML
    )
    assert r.status_code == 303 and r.headers["content-type"].startswith("application/yaml")
    offerset = yaml.safe_load(r.text)
    assert offerset["result"] == "YES"
    got = await broker_stack.client.get(r.headers["location"].split("gateway")[-1], headers=YAML)
    assert yaml.safe_load(got.text)["meta"]["uuid"] == offerset["meta"]["uuid"]
    session = offerset["offers"][0]["meta"]["uuid"]
    assert (await update(broker_stack, session, "ACCEPTED", YAML)).status_code == 200
    assert (await follow(broker_stack, session, {"COMPLETED"}, YAML))["phase"] == "COMPLETED"
    direct = await broker_stack.client.post("/sessions", json=app_request(file_id))
    assert direct.status_code == 303 and direct.json()["phase"] in (
        "ACCEPTED",
        "PREPARING",
        "RUNNING",
        "COMPLETED",
    )
    assert (await follow(broker_stack, direct.json()["meta"]["uuid"], {"COMPLETED"}))["phase"] == "COMPLETED"


async def test_unknown_kinds_get_a_no_not_an_error(broker_stack: Stack) -> None:
    r = await broker_stack.client.post("/offersets", json={"executable": {"kind": "urn:nobody:knows-1.0"}})
    assert r.status_code == 303
    body = r.json()
    assert body["result"] == "NO" and body["offers"] == []
    assert "unknown executable kind" in body["meta"]["messages"][0]["message"]
    docker = await broker_stack.client.post(
        "/offersets",
        json={
            "executable": {
                "kind": kinds.DOCKER,
                "image": {"locations": ["ghcr.io/x/y:1"], "digest": "sha256:0"},
            }
        },
    )
    assert docker.json()["result"] == "NO"
    assert "runs no docker-container" in docker.json()["meta"]["messages"][0]["message"]
    direct = await broker_stack.client.post(
        "/sessions", json={"executable": {"kind": "urn:nobody:knows-1.0"}}
    )
    assert direct.status_code == 400 and direct.json()["phase"] == "FAILED"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([1, 2], "must be an object"),
        ({"compute": {}}, "no executable"),
        ({"executable": {"kind": kinds.CIRASA_APP, "app": "sleep", "options": {"seconds": "x"}}}, "seconds"),
        ({"executable": {"kind": kinds.DOCKER}, "compute": {"cores": {"min": 0}}}, "positive"),
        ({"executable": {"kind": kinds.DOCKER}, "schedule": {"requested": {"duration": "soon"}}}, "duration"),
        (
            {"executable": {"kind": kinds.DOCKER}, "schedule": {"requested": {"start": "tomorrow"}}},
            "interval",
        ),
    ],
)
async def test_malformed_requests_are_400(broker_stack: Stack, body: Any, fragment: str) -> None:
    r = await broker_stack.client.post("/offersets", json=body)
    assert r.status_code == 400 and fragment in r.json()["message"]


async def test_update_errors(broker_stack: Stack, fits_image: Path) -> None:
    assert (await update(broker_stack, "0" * 32, "ACCEPTED")).status_code == 404
    file_id = await broker_stack.upload(fits_image)
    offers = (await broker_stack.client.post("/offersets", json=app_request(file_id))).json()["offers"]
    session = offers[0]["meta"]["uuid"]
    bad = await broker_stack.client.post(
        f"/sessions/{session}", json={"kind": "uri:enum-value-update", "path": "phase", "value": "RUNNING"}
    )
    assert bad.status_code == 400
    wrapped = {"update": {"kind": "uri:enum-value-update", "path": "/phase", "value": "REJECTED"}}
    assert (await broker_stack.client.post(f"/sessions/{session}", json=wrapped)).json()[
        "phase"
    ] == "REJECTED"
    assert (await update(broker_stack, session, "REJECTED")).status_code == 409
    assert (await broker_stack.client.get("/offersets/nope")).status_code == 404


async def test_offers_expire_on_time_and_give_their_capacity_back(
    settings: Settings, fits_image: Path
) -> None:
    settings.platforms = [
        PlatformConfig(name="solo", cores=2, memory_gib=4, max_duration_s=3600, offer_ttl_s=1, offer_share=1)
    ]
    stack = await start_stack(settings, memory=True)
    try:
        file_id = await stack.upload(fits_image)
        whole = app_request(file_id, cores=(2, 2), duration="PT30M")
        first = (await stack.client.post("/offersets", json=whole)).json()["offers"][0]
        second = (await stack.client.post("/offersets", json=whole)).json()["offers"][0]
        start = lambda o: datetime.fromisoformat(o["schedule"]["preparing"]["start"])  # noqa: E731
        assert start(second) - start(first) >= timedelta(minutes=30) - timedelta(seconds=2)  # no overlap
        await follow(stack, first["meta"]["uuid"], {"EXPIRED"}, timeout_s=10)
        late = await update(stack, first["meta"]["uuid"], "ACCEPTED")
        assert late.status_code == 410
        await follow(stack, second["meta"]["uuid"], {"EXPIRED"}, timeout_s=10)
        planner = stack.services["planner"]
        await asyncio.sleep(0.1)
        assert await stored_bookings(planner.db, "solo") == []
        third = (await stack.client.post("/offersets", json=whole)).json()["offers"][0]
        assert abs((start(third) - start(first)).total_seconds()) < 10  # capacity is back: starts now again
    finally:
        await stop_stack(stack)


async def test_cancel_an_accepted_session_cancels_the_job(broker_stack: Stack, fits_image: Path) -> None:
    file_id = await broker_stack.upload(fits_image)
    offers = await broker_stack.client.post("/offersets", json=app_request(file_id, options={"seconds": 60}))
    session = offers.json()["offers"][0]["meta"]["uuid"]
    await update(broker_stack, session, "ACCEPTED")
    await follow(broker_stack, session, {"RUNNING"})
    r = await update(broker_stack, session, "CANCELLED")
    assert r.status_code == 200
    assert (await follow(broker_stack, session, {"CANCELLED"}, timeout_s=15))["phase"] == "CANCELLED"
    planner = broker_stack.services["planner"]
    await asyncio.sleep(0.2)
    assert not [b for p in planner.settings.platforms for b in await stored_bookings(planner.db, p.name)]


def notebook(*sources: str) -> bytes:
    cells: list[dict[str, Any]] = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in sources
    ]
    doc = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    }
    import json

    return json.dumps(doc).encode()


async def test_a_jupyter_notebook_runs_headless(broker_stack: Stack) -> None:
    up = await broker_stack.client.post(
        f"{API}/upload",
        files={"file": ("analysis.ipynb", notebook("x = 6 * 7", "open('answer.txt', 'w').write(str(x))"))},
    )
    assert up.status_code == 200, up.text
    file_id = up.json()["uuid"]
    request = {"executable": {"kind": kinds.JUPYTER, "location": f"http://gateway{API}/download/{file_id}"}}
    offers = (await broker_stack.client.post("/offersets", json=request)).json()
    assert offers["result"] == "YES", offers
    session = offers["offers"][0]["meta"]["uuid"]
    await update(broker_stack, session, "ACCEPTED")
    assert (await follow(broker_stack, session, {"COMPLETED", "FAILED"}, timeout_s=120))[
        "phase"
    ] == "COMPLETED"
    job_dir = broker_stack.settings.jobs_dir / "anonymous" / f"job_{session}"
    assert (job_dir / "answer.txt").read_text() == "42"
    assert (job_dir / "executed-analysis.ipynb").is_file()  # named after the notebook, as uploaded
    failing = await broker_stack.client.post(
        f"{API}/upload", files={"file": ("bad.ipynb", notebook("1 / 0"))}
    )
    bad = {"executable": {"kind": kinds.JUPYTER, "location": failing.json()["uuid"]}}
    direct = await broker_stack.client.post("/sessions", json=bad)
    assert (
        await follow(broker_stack, direct.json()["meta"]["uuid"], {"COMPLETED", "FAILED"}, timeout_s=120)
    )["phase"] == "FAILED"
    nowhere = {"executable": {"kind": kinds.JUPYTER, "location": "ftp://example.org/x.ipynb"}}
    no = (await broker_stack.client.post("/offersets", json=nowhere)).json()
    assert (
        no["result"] == "NO"
        and "http(s) URL or name an uploaded notebook" in no["meta"]["messages"][0]["message"]
    )


async def test_offer_share_keeps_room_for_everyone_else(settings: Settings, fits_image: Path) -> None:
    """Issue 9: an offer set never accepted (2 cores of a 2-core platform for 6 h) held the platform
    until it expired, and a caesar job waited. One user's unaccepted offers hold at most their share."""
    settings.platforms = [PlatformConfig(name="solo", cores=2, memory_gib=4, max_duration_s=36000)]
    stack = await start_stack(settings, memory=True)
    try:
        file_id = await stack.upload(fits_image)
        greedy = await stack.client.post(
            "/offersets", json=app_request(file_id, cores=(2, 2), duration="PT6H")
        )
        assert greedy.json()["result"] == "NO"
        reason = json.dumps(greedy.json()["meta"].get("messages", []))
        assert "at most 50% of its 2 cores" in reason, greedy.json()
        held = (
            await stack.client.post("/offersets", json=app_request(file_id, cores=(1, 2), duration="PT6H"))
        ).json()
        assert [o["compute"]["cores"]["min"] for o in held["offers"]] == [1]  # capped to the share
        job = await stack.submit("sleep", file_id, {"seconds": 0.2})  # someone else's work starts at once
        status = await stack.wait_state(job, {"SUCCESS"}, timeout_s=20)
        assert "RUNNING" in status["_seen"] or status["state"] == "SUCCESS"
        assert (await stack.client.post("/offersets", json=app_request(file_id, duration="PT6H"))).json()[
            "result"
        ] == "NO"  # the share is used up until the held offer is accepted, rejected or expires
    finally:
        await stop_stack(stack)
