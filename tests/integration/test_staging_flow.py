"""Issue 11: ExecutionBroker requests with data, storage and volumes, and notebooks by URL, staged
during PREPARING into the platform's shared cache, offered after staging, run in the sandbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from cirasa.common.settings import PlatformConfig, Settings
from cirasa.gateway.broker import kinds
from tests.api.test_broker import YAML, follow, notebook, update
from tests.conftest import API, Stack, start_stack, stop_stack, wait_for
from tests.file_server import Origin
from tests.integration.test_staging_ivoa import FITS, IVOID, serve_links
from tests.s3_server import ACCESS, SECRET

EB = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types"
READER = (
    "import json\n"
    "from astropy.io import fits\n"
    "data = fits.getdata('/data/sky.fits')\n"
    "try:\n"
    "    open('/data/sky.fits', 'ab').write(b'x')\n"
    "    writable = True\n"
    "except OSError:\n"
    "    writable = False\n"
    "open('/scratch/note.txt', 'w').write('from the notebook')\n"
    "json.dump({'shape': list(data.shape), 'sum': float(data.sum()), 'data_writable': writable},\n"
    "          open('result.json', 'w'))\n"
)


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    settings.platforms = [
        PlatformConfig(name="local", cores=2, memory_gib=4, max_duration_s=3600, offer_share=1)
    ]
    settings.staging.policy = {"allowed_hosts": ["127.0.0.1"]}
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


def reference_request(server: Origin, data_url: str) -> dict[str, Any]:
    """The full reference shape: executable by URL, compute with volumes, storage, data, schedule."""
    return {
        "executable": {
            "kind": f"{EB}/executable/jupyter-notebook-1.0",
            "meta": {"name": "analysis"},
            "location": server.url("/analysis.ipynb"),
        },
        "compute": {
            "kind": f"{EB}/compute/simple-compute-resource-1.0",
            "meta": {"name": "compute"},
            "cores": {"min": 1, "max": 1},
            "memory": {"min": 1, "max": 2},
            "volumes": [
                {
                    "kind": f"{EB}/volume/simple-volume-mount-1.0",
                    "meta": {"name": "input"},
                    "path": "/data/sky.fits",
                    "mode": "READONLY",
                    "resource": "sky",
                },
                {
                    "kind": f"{EB}/volume/simple-volume-mount-1.0",
                    "meta": {"name": "out"},
                    "path": "/scratch",
                    "mode": "READWRITE",
                    "resource": "scratch",
                },
            ],
        },
        "storage": [
            {
                "kind": f"{EB}/storage/simple-storage-resource-1.0",
                "meta": {"name": "scratch"},
                "size": {"min": 1},
            }
        ],
        "data": [
            {"kind": f"{EB}/data/simple-data-resource-1.0", "meta": {"name": "sky"}, "location": data_url}
        ],
        "schedule": {"requested": {"duration": "PT10M"}},
    }


def sleep_with(file_id: str, *data: dict[str, Any]) -> dict[str, Any]:
    """A short ``sleep`` job on an uploaded file, with ``data`` resources."""
    return {
        "executable": {
            "kind": kinds.CIRASA_APP,
            "app": "sleep",
            "options": {"seconds": 0.1},
            "inputs": [file_id],
        },
        "data": list(data),
    }


def http_data(url: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    meta = {"meta": {"name": name}} if name else {}
    return {"kind": f"{EB}/data/simple-data-resource-1.0", **meta, "location": url, **extra}


async def job_dir_of(stack: Stack, session: str) -> Path:
    """A session's job directory (direct execution runs the job under the proposal's id)."""
    doc = await stack.services["gateway"].broker.sessions.get(session)  # type: ignore[attr-defined]
    assert doc is not None and doc.job_id is not None
    return stack.settings.jobs_dir / "anonymous" / f"job_{doc.job_id}"


async def session_of(stack: Stack, answer: Any) -> str:
    """The session a direct execution made: at once (303), or once the platform had room (202)."""
    if answer.status_code == 303:
        return str(answer.json()["meta"]["uuid"])
    assert answer.status_code == 202, answer.text

    async def placed() -> str | None:
        offers = (await stack.client.get(answer.headers["location"].removeprefix("http://gateway"))).json()
        return offers["offers"][0]["meta"]["uuid"] if offers.get("offers") else None

    return str(await wait_for(placed, 60, "the waiting direct execution to be placed"))


async def phases_until_done(stack: Stack, session: str, timeout_s: float = 120) -> list[str]:
    seen: list[str] = []
    for _ in range(int(timeout_s / 0.05)):
        phase = (await stack.client.get(f"/sessions/{session}")).json()["phase"]
        if not seen or seen[-1] != phase:
            seen.append(phase)
        if phase in ("COMPLETED", "FAILED", "CANCELLED"):
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session} did not end: {seen}")


async def test_a_notebook_by_url_reads_its_staged_data_and_writes_its_results(
    stack: Stack, origin: Origin, fits_image: Path
) -> None:
    origin.serve("/analysis.ipynb", notebook(READER))
    data_url = origin.serve("/sky.fits", fits_image.read_bytes(), delay_s=1.5)  # PREPARING shows
    body = yaml.safe_dump(reference_request(origin, data_url))
    r = await stack.client.post("/offersets", content=body, headers=YAML)
    assert r.status_code == 303, r.text
    offerset = yaml.safe_load(r.text)
    assert offerset["result"] == "YES", offerset
    offer = offerset["offers"][0]
    assert "staging first" in offer["meta"]["name"]  # the offer says it starts after staging
    assert [d["meta"]["name"] for d in offer["data"]] == ["sky"]
    assert [v["path"] for v in offer["compute"]["volumes"]] == ["/data/sky.fits", "/scratch"]
    session = offer["meta"]["uuid"]
    assert (await update(stack, session, "ACCEPTED")).status_code == 200

    phases = await phases_until_done(stack, session)
    assert phases[-1] == "COMPLETED", phases
    assert phases.index("PREPARING") < phases.index("COMPLETED")
    final = (await stack.client.get(f"/sessions/{session}")).json()
    assert any("data staged" in m["message"] for m in final["meta"]["messages"])
    job_dir = stack.settings.jobs_dir / "anonymous" / f"job_{session}"
    result = json.loads((job_dir / "result.json").read_text())
    assert result["shape"] == [256, 256] and not result["data_writable"]
    assert (job_dir / "volumes" / "out" / "note.txt").read_text() == "from the notebook"
    assert (job_dir / "executed-analysis.ipynb").is_file()
    assert origin.gets["/sky.fits"] == 1 and origin.gets["/analysis.ipynb"] == 1
    status = await stack.client.get(f"{API}/job/{session}/status")
    assert status.json()["state"] == "SUCCESS"
    # the session's results: its connectors lead to the job's results and archive
    results, archive = (c["location"].removeprefix("http://gateway") for c in final["connectors"])
    listed = await stack.client.get(results)
    assert listed.status_code == 200 and "result.json" in listed.text
    assert (await stack.client.get(archive)).status_code == 200


async def test_jobs_sharing_a_dataset_fetch_it_once(stack: Stack, origin: Origin, fits_image: Path) -> None:
    data_url = origin.serve("/shared.fits", fits_image.read_bytes(), delay_s=0.5)
    file_id = await stack.upload(fits_image)

    def labels(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"platform": "local"}) or 0.0

    hits, misses = labels("cirasa_staging_cache_hits_total"), labels("cirasa_staging_cache_misses_total")
    request = sleep_with(file_id, http_data(data_url, "shared"))
    started = await asyncio.gather(*(stack.client.post("/sessions", json=request) for _ in range(4)))
    sessions = [await session_of(stack, r) for r in started]  # two run now, two when cores free
    for session in sessions:
        assert (await follow(stack, session, {"COMPLETED", "FAILED"}))["phase"] == "COMPLETED"
    assert origin.gets["/shared.fits"] == 1
    new_hits = labels("cirasa_staging_cache_hits_total") - hits
    new_misses = labels("cirasa_staging_cache_misses_total") - misses
    print(f"4 jobs sharing one dataset: {new_misses:g} download, {new_hits:g} cache hits")
    assert (new_misses, new_hits) == (1, 3)
    for session in sessions:  # each job sees the dataset at the default path, read-only
        job_dir = await job_dir_of(stack, session)
        assert (
            job_dir / ".cirasa" / "volumes" / "shared" / "shared"
        ).stat().st_size == fits_image.stat().st_size


async def test_data_that_cannot_be_fetched_fails_the_session_with_the_reason(
    stack: Stack, origin: Origin, fits_image: Path
) -> None:
    file_id = await stack.upload(fits_image)
    request = sleep_with(file_id, http_data(origin.url("/gone.fits")))
    session = (await stack.client.post("/sessions", json=request)).json()["meta"]["uuid"]
    failed = await follow(stack, session, {"COMPLETED", "FAILED"})
    assert failed["phase"] == "FAILED"
    text = " ".join(m["message"] for m in failed["meta"]["messages"])
    assert "404" in text and "gone.fits" in text
    job_id = (await job_dir_of(stack, session)).name.removeprefix("job_")
    status = (await stack.client.get(f"{API}/job/{job_id}/status")).json()
    assert status["state"] == "FAILURE" and "404" in status["status"]


async def test_what_the_platform_cannot_honour_gets_a_no_that_says_what(stack: Stack) -> None:
    request = {
        "executable": {
            "kind": f"{EB}/executable/jupyter-notebook-1.0",
            "location": "https://elsewhere.org/a.ipynb",
        },
        "data": [
            {"kind": f"{EB}/data/rucio-data-resource-1.0", "meta": {"name": "r"}},
            {
                "kind": f"{EB}/data/S3-data-resource-1.0",
                "meta": {"name": "b"},
                "endpoint": "http://127.0.0.1:9",
                "bucket": "x",
            },
        ],
        "compute": {
            "volumes": [
                {"meta": {"name": "v"}, "path": "/v", "resource": "nothing", "cardinality": "INSTANCE"}
            ]
        },
    }
    no = (await stack.client.post("/offersets", json=request)).json()
    assert no["result"] == "NO"
    text = " | ".join(m["message"] for m in no["meta"]["messages"])
    assert "Rucio" in text and "whole S3 buckets" in text and "INSTANCE" in text
    assert "elsewhere.org" in text  # not an allowed host
    bad = {
        "executable": {"kind": kinds.JUPYTER, "location": "x"},
        "compute": {"volumes": [{"path": "rel", "resource": "a"}]},
    }
    assert (await stack.client.post("/offersets", json=bad)).status_code == 400


async def test_a_cached_dataset_is_offered_earlier_than_one_to_fetch(
    stack: Stack, origin: Origin, fits_image: Path
) -> None:
    """The planner learns what the platform holds from the staging it saw: a second request for the
    same data is offered with nothing to fetch."""
    data_url = origin.serve("/known.fits", fits_image.read_bytes())
    file_id = await stack.upload(fits_image)
    request = sleep_with(file_id, http_data(data_url, "known", size=500_000_000))
    first = (await stack.client.post("/offersets", json=request)).json()["offers"][0]
    assert "500.0 MB to fetch" in first["meta"]["name"]
    preparing = first["schedule"]["preparing"]["duration"]
    assert preparing.startswith("PT") and preparing != "PT0S"
    await update(stack, first["meta"]["uuid"], "ACCEPTED")
    await follow(stack, first["meta"]["uuid"], {"COMPLETED"})
    await asyncio.sleep(0.3)  # the planner hears the end of the staging
    second = (await stack.client.post("/offersets", json=request)).json()["offers"][0]
    assert "1 of 1 resources cached here" in second["meta"]["name"]
    assert second["schedule"]["preparing"]["duration"] == "PT0S"


def without_meta(value: Any) -> Any:
    """The request as older clients write it: ``name`` beside each item instead of ``meta.name``."""
    if isinstance(value, list):
        return [without_meta(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: without_meta(v) for k, v in value.items() if k != "meta"}
    if isinstance(value.get("meta"), dict) and "name" in value["meta"]:
        out["name"] = value["meta"]["name"]
    return out


async def test_the_reference_shape_in_json_without_meta_runs_too(
    stack: Stack, origin: Origin, fits_image: Path
) -> None:
    origin.serve("/analysis.ipynb", notebook(READER))
    data_url = origin.serve("/sky.fits", fits_image.read_bytes())
    request = without_meta(reference_request(origin, data_url))
    assert "meta" not in json.dumps(request)
    session = (await stack.client.post("/sessions", json=request)).json()["meta"]["uuid"]
    assert (await follow(stack, session, {"COMPLETED", "FAILED"}, timeout_s=120))["phase"] == "COMPLETED"
    result = json.loads((await job_dir_of(stack, session) / "result.json").read_text())
    assert result["shape"] == [256, 256] and not result["data_writable"]


async def test_s3_and_ivoa_data_held_by_one_storage_are_one_directory_in_the_job(
    settings: Settings, origin: Origin, bucket: Any, s3_url: str, fits_image: Path
) -> None:
    """An S3 object and an IVOA dataset (by ivo:// identifier, through the platform's DataLink
    service) linked to one storage resource, mounted read-only as a directory of both."""
    settings.staging.policy = {
        "allowed_hosts": ["127.0.0.1"],
        "s3_access_key": ACCESS,
        "s3_secret_key": SECRET,
        "datalink_services": {"ivo://example.org/survey": origin.url("/links")},
    }
    stack = await start_stack(settings, memory=True)
    try:
        bucket.put_object(Key="maps/field_B.fits", Body=fits_image.read_bytes())
        serve_links(origin, "/links")
        lister = "import os, json\njson.dump(sorted(os.listdir('/survey')), open('listing.json', 'w'))\n"
        origin.serve("/list.ipynb", notebook(lister))
        request = {
            "executable": {
                "kind": f"{EB}/executable/jupyter-notebook-1.0",
                "location": origin.url("/list.ipynb"),
            },
            "storage": [{"kind": f"{EB}/storage/simple-storage-resource-1.0", "meta": {"name": "survey"}}],
            "data": [
                {
                    "kind": f"{EB}/data/S3-data-resource-1.0",
                    "meta": {"name": "field_B.fits"},
                    "endpoint": s3_url,
                    "template": "",
                    "bucket": bucket.name,
                    "object": "maps/field_B.fits",
                    "storage": "survey",
                },
                {
                    "kind": f"{EB}/data/ivoa-data-resource-1.0",
                    "meta": {"name": "obs-1.fits"},
                    "ivoa": {"ivoid": IVOID},
                    "storage": "survey",
                },
            ],
            "compute": {"volumes": [{"meta": {"name": "survey"}, "path": "/survey", "resource": "survey"}]},
        }
        session = (await stack.client.post("/sessions", json=request)).json()["meta"]["uuid"]
        done = await follow(stack, session, {"COMPLETED", "FAILED"}, timeout_s=120)
        assert done["phase"] == "COMPLETED", done["meta"].get("messages")
        job_dir = await job_dir_of(stack, session)
        assert json.loads((job_dir / "listing.json").read_text()) == ["field_B.fits", "obs-1.fits"]
        staged = job_dir / ".cirasa" / "volumes" / "survey"
        assert (staged / "field_B.fits").read_bytes() == fits_image.read_bytes()
        assert (staged / "obs-1.fits").read_bytes() == FITS
    finally:
        await stop_stack(stack)
