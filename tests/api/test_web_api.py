"""``/cirasa/api/v1``, what the web page and the CLI use: apps with whether they run here, job summaries
and details, log tails, products by name, the sky image, deleting a job, comparing two catalogues, and
the live job stream; bad input gets a 4xx naming the problem and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from cirasa.gateway.web.events import job_events
from cirasa.gateway.web.jobs_view import job_summaries
from tests.conftest import API, Stack
from tests.live import LiveGateway

WEB = "/cirasa/api/v1"


async def test_apps_say_which_run_here_and_why_not(memory_stack: Stack) -> None:
    apps = {a["name"]: a for a in (await memory_stack.client.get(f"{WEB}/apps")).json()["apps"]}
    assert apps["sep"]["runnable"] is True and apps["sep"]["reason"] is None
    assert "seedthr" in apps["sep"]["options"]
    caesar = apps["caesar"]
    assert caesar["runnable"] is False
    assert "container image" in caesar["reason"] and caesar["reason"].startswith("local:")


async def test_a_job_seen_from_the_page(memory_stack: Stack, fits_image: Path) -> None:
    client = memory_stack.client
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sep", file_id, {"seedthr": 5})
    await memory_stack.wait_state(job_id, {"SUCCESS"})

    listed = (await client.get(f"{WEB}/jobs")).json()
    assert [(j["job_id"], j["file_name"], j["final"]) for j in listed] == [(job_id, "sky.fits", True)]
    detail = (await client.get(f"{WEB}/jobs/{job_id}")).json()
    assert detail["job_inputs"] == {"seedthr": 5} and detail["state"] == "SUCCESS"
    names = {p["name"] for p in detail["products"]}
    assert "stderr.log" in names and any(n.endswith(".csv") for n in names)

    csv_name = next(n for n in names if n.endswith(".csv"))
    csv = await client.get(f"{WEB}/jobs/{job_id}/products/{csv_name}")
    assert csv.status_code == 200 and csv.text.startswith("source_id")
    log = await client.get(f"{WEB}/jobs/{job_id}/log", params={"stream": "stdout", "tail": 1})
    assert log.status_code == 200 and log.text.count("\n") <= 1

    sky = (await client.get(f"{WEB}/jobs/{job_id}/sky")).json()
    assert (sky["width"], sky["height"], sky["step"]) == (256, 256, 1)
    assert len(sky["catalogue"]["sources"]) >= 8
    png = await client.get(sky["image_url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/jobs/0123456789abcdef0123456789abcdef", 404, "not found"),
        ("/jobs/not-an-id/log", 404, "not found"),
        ("/jobs/{job}/log?stream=stdin", 400, "stdout or stderr"),
        ("/jobs/{job}/log?tail=-1", 400, "query.tail"),
        ("/jobs/{job}/products/..%2F..%2Fdata", 404, "Not Found"),  # no route: never a file
        ("/jobs/{job}/products/.hidden", 404, "no product"),
        ("/files/0123456789abcdef0123456789abcdef/image.png", 404, "not found"),
        ("/compare?a={job}", 400, "query.b"),
        ("/compare?a=0123456789abcdef0123456789abcdef&b={job}", 404, "not found"),
        ("/compare?a={job}&b={job}&radius_arcsec=0", 400, "query.radius_arcsec"),
    ],
)
async def test_bad_requests_are_4xx_with_the_reason(
    memory_stack: Stack, fits_image: Path, path: str, status: int, fragment: str
) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(job_id, {"SUCCESS"})
    before = (await memory_stack.client.get(f"{WEB}/jobs")).json()
    r = await memory_stack.client.get(WEB + path.format(job=job_id))
    assert r.status_code == status, r.text
    assert fragment in r.json()["status"]
    assert (await memory_stack.client.get(f"{WEB}/jobs")).json() == before


async def test_unfinished_or_catalogue_less_jobs_cannot_be_compared(
    memory_stack: Stack, fits_image: Path
) -> None:
    file_id = await memory_stack.upload(fits_image)
    slept = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    running = await memory_stack.submit("sleep", file_id, {"seconds": 30})
    await memory_stack.wait_state(slept, {"SUCCESS"})
    r = await memory_stack.client.get(f"{WEB}/compare", params={"a": slept, "b": slept})
    assert r.status_code == 404 and "made no catalogue" in r.json()["status"]
    r = await memory_stack.client.get(f"{WEB}/compare", params={"a": running, "b": slept})
    assert r.status_code == 409 and "not yet completed" in r.json()["status"]


async def test_a_file_that_is_no_image_is_refused(memory_stack: Stack, tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    file_id = await memory_stack.upload(notebook)
    r = await memory_stack.client.get(f"{WEB}/files/{file_id}/image.png")
    assert r.status_code == 400 and "cannot be shown" in r.json()["status"]


async def test_deleting_a_running_job_cancels_it_and_hides_it(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 60})
    await memory_stack.wait_state(job_id, {"RUNNING"})
    r = await memory_stack.client.delete(f"{WEB}/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "Job cancelled and deleted"
    await memory_stack.wait_state(job_id, {"CANCELED"})
    assert (await memory_stack.client.get(f"{WEB}/jobs")).json() == []
    assert (await memory_stack.client.get(f"{WEB}/jobs/{job_id}")).status_code == 404
    assert (await memory_stack.client.delete(f"{WEB}/jobs/{job_id}")).status_code == 404


def test_the_job_stream_sends_every_change(live_gateway: LiveGateway, fits_image: Path) -> None:
    with httpx.Client(base_url=live_gateway.url, timeout=30) as client:
        with fits_image.open("rb") as fh:
            file_id = client.post(f"{API}/upload", files={"file": ("sky.fits", fh.read())}).json()["uuid"]
        states: list[str] = []
        with client.stream("GET", f"{WEB}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            job_id = ""
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                jobs = json.loads(line.removeprefix("data: "))
                if not job_id:
                    assert jobs == []  # the first event: the state as it is
                    body = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 1.5}}
                    job_id = client.post(f"{API}/job", json=body).json()["job_id"]
                    continue
                states.append(jobs[0]["state"])
                if jobs[0]["final"]:
                    break
    assert states[-1] == "SUCCESS" and "RUNNING" in states


async def test_the_job_stream_ends_when_the_server_drains(memory_stack: Stack) -> None:
    """A shutdown waits for open responses: the stream must end by itself once the server drains."""
    gateway = memory_stack.services["gateway"]
    draining = False
    app = SimpleNamespace(state=SimpleNamespace(draining=lambda: draining))
    request = SimpleNamespace(app=app, is_disconnected=lambda: asyncio.sleep(0, result=False))
    stream = job_events(request, gateway, "anonymous")  # type: ignore[arg-type]
    assert (await anext(stream)).startswith("retry:")
    assert (await anext(stream)).startswith("event: jobs")
    draining = True
    rest = await asyncio.wait_for(collect(stream), timeout=5)
    assert rest == []


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in stream]


async def test_the_listing_is_newest_first_and_bounded(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    made = [await memory_stack.submit("sleep", file_id, {"seconds": 0.01}) for _ in range(3)]
    gateway = memory_stack.services["gateway"]
    newest = await job_summaries(gateway, "anonymous", limit=2)  # type: ignore[arg-type]
    assert [j["job_id"] for j in newest] == made[:0:-1]
    assert {j["file_name"] for j in newest} == {"sky.fits"}
    listed = (await memory_stack.client.get(f"{WEB}/jobs")).json()
    assert [j["job_id"] for j in listed] == made[::-1]
