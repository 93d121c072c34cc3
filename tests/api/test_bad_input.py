"""Bad input on every face (issue 9): a clean 4xx in the face's own form that changes nothing, fast.

Also what a stored value or a file in a job directory must never do: break a listing, or let a
product route serve something from outside the job directory.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from cirasa.gateway.bodies import MAX_DEPTH
from cirasa.gateway.broker import kinds
from cirasa.gateway.service import Gateway
from tests.api.test_broker import app_request
from tests.conftest import API, Stack

JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}
EB_PATHS = ("/offersets", "/sessions")


def gateway_of(stack: Stack) -> Gateway:
    gateway = stack.services["gateway"]
    assert isinstance(gateway, Gateway)
    return gateway


async def snapshot(stack: Stack) -> tuple[Any, ...]:
    """Every stored document of the gateway, every file on disk and every event published."""
    gateway = gateway_of(stack)
    collections = (gateway.files, gateway.jobs, gateway.broker.offersets, gateway.broker.sessions)
    docs = [[d async for d in c.raw.find({})] for c in collections]
    disk = sorted(
        str(p) for root in (stack.settings.data_dir, stack.settings.jobs_dir) for p in root.rglob("*")
    )
    return docs, disk, len(stack.memory.published) if stack.memory else 0


async def refused(stack: Stack, path: str, body: str | bytes, headers: dict[str, str]) -> dict[str, Any]:
    """POST ``body``: a 400 within a second that changes nothing; the error body, as JSON."""
    before = await snapshot(stack)
    started = time.monotonic()
    r = await stack.client.post(path, content=body, headers=headers)
    assert time.monotonic() - started < 1.0
    assert r.status_code == 400, r.text[:300]
    assert len(r.content) < 4096
    assert await snapshot(stack) == before
    error: dict[str, Any] = r.json()
    if path.startswith(API):
        assert set(error) >= {"status", "state", "job_id"}
    else:
        assert error["kind"] == kinds.ERROR and error["status"] == 400
    return error


def message(error: dict[str, Any]) -> str:
    return str(error.get("status") if isinstance(error.get("status"), str) else error["message"])


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def caesar_job(file_id: str, options: str = '{"seedthr": 5}', tag: str = '""') -> str:
    return f'{{"app": "sep", "data_inputs": "{file_id}", "job_inputs": {options}, "tag": {tag}}}'


def eb_request(file_id: str, change: Callable[[dict[str, Any]], None] | None = None, deep: int = 0) -> str:
    body = app_request(file_id)
    if change is not None:
        change(body)
    if deep:
        body["executable"]["options"]["deep"] = "DEEP"
    return json.dumps(body).replace('"DEEP"', nested(deep))


@pytest.fixture
async def file_id(memory_stack: Stack, fits_image: Path) -> str:
    return await memory_stack.upload(fits_image)


# --- 1. YAML aliases ---------------------------------------------------------------------------

BOMB = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]" for p, n in zip("abcd", "bcde", strict=True)),
        "executable: {kind: docker-container}",
    ]
)


@pytest.mark.parametrize("path", EB_PATHS)
@pytest.mark.parametrize("body", [BOMB, "executable: &x {kind: x}\ncompute: *x"], ids=["bomb", "alias"])
async def test_yaml_aliases_are_refused(memory_stack: Stack, path: str, body: str) -> None:
    assert len(BOMB) < 600
    assert "aliases" in message(await refused(memory_stack, path, body, YAML))


# --- 2. deep nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 950])
async def test_deep_caesar_job_is_refused(memory_stack: Stack, file_id: str, depth: int) -> None:
    body = caesar_job(file_id, options=f'{{"seedthr": 5, "deep": {nested(depth)}}}')
    assert f"{MAX_DEPTH} levels" in message(await refused(memory_stack, f"{API}/job", body, JSON))


@pytest.mark.parametrize("path", EB_PATHS)
@pytest.mark.parametrize(
    ("headers", "depth"), [(JSON, 950), (YAML, 470), (JSON, MAX_DEPTH), (YAML, MAX_DEPTH)]
)
async def test_deep_execution_request_is_refused(
    memory_stack: Stack, file_id: str, path: str, headers: dict[str, str], depth: int
) -> None:
    body = eb_request(file_id, deep=depth)  # JSON is YAML too
    assert f"{MAX_DEPTH} levels" in message(await refused(memory_stack, path, body, headers))


async def test_deep_session_update_is_refused(memory_stack: Stack) -> None:
    body = f'{{"kind": "uri:enum-value-update", "path": "phase", "value": {nested(950)}}}'
    assert f"{MAX_DEPTH} levels" in message(await refused(memory_stack, f"/sessions/{'0' * 32}", body, JSON))


# --- 3. other bodies that answered 500 -----------------------------------------------------------


@pytest.mark.parametrize("path", [f"{API}/job", *EB_PATHS])
@pytest.mark.parametrize("headers", [JSON, YAML])
async def test_non_utf8_body_is_refused(memory_stack: Stack, path: str, headers: dict[str, str]) -> None:
    await refused(memory_stack, path, b'{"app": "\xff\xfe"}', headers)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda b: b["compute"].update(cores={"min": 10**9, "max": 10**9}), "cores"),
        (lambda b: b["compute"].update(memory={"min": 10**9}), "memory"),
        (lambda b: b["schedule"]["requested"].update(duration="P100000Y"), "duration"),
        (lambda b: b["schedule"]["requested"].update(start="9999-12-31T23:00:00Z/PT2H"), "start"),
        (
            lambda b: b["schedule"]["requested"].update(start="9999-12-31T23:00:00Z/9999-12-31T23:30:00Z"),
            "start",
        ),
        (lambda b: b["schedule"]["requested"].update(start="0001-01-01T00:00:00Z/PT1H"), "start"),
        (lambda b: b["schedule"]["requested"].update(start="P1D/0001-01-01T00:00:00Z"), "start"),
        (lambda b: b["executable"]["options"].update({"k\x01": 1}), "control"),
        (lambda b: b["executable"]["options"].update({"seconds": 10**30}), "64 bits"),
    ],
    ids=["cores", "memory", "duration", "start-9999", "end-9999", "start-0001", "end-0001", "key", "bigint"],
)
@pytest.mark.parametrize("path", EB_PATHS)
async def test_out_of_range_execution_request_is_refused(
    memory_stack: Stack, file_id: str, path: str, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    assert fragment in message(await refused(memory_stack, path, eb_request(file_id, change), JSON))


@pytest.mark.parametrize(
    ("options", "tag", "fragment"),
    [
        ('{"seedthr": 5, "k\\u0001": 1}', '""', "control"),
        ('{"seedthr": 5, "k\\n": 1}', '""', "control"),
        ('{"seedthr": 5}', '"a\\u0002b"', "control"),
        ('{"seedthr": 5}', "NaN", "NaN"),
        ('{"seedthr": 5, "x": Infinity}', '""', "Infinity"),
        ('{"seedthr": 5, "x": "\\ud800"}', '""', "surrogate"),
        ('{"seedthr": 5}', "1" + "0" * 30, "64 bits"),
    ],
)
async def test_unstorable_caesar_job_is_refused(
    memory_stack: Stack, file_id: str, options: str, tag: str, fragment: str
) -> None:
    body = caesar_job(file_id, options=options, tag=tag)
    assert fragment in message(await refused(memory_stack, f"{API}/job", body, JSON))


async def test_uws_renders_stored_control_characters(memory_stack: Stack, file_id: str) -> None:
    """Jobs stored before such input was refused: every UWS view still renders."""
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await gateway_of(memory_stack).jobs.raw.update_one(
        {"_id": job_id},
        {"$set": {"tag": "t\x01\x1b", "job_inputs": {"k\x02": "v\x00"}, "status": "s\x07"}},
    )
    for path in ("/uws/jobs", f"/uws/jobs/{job_id}", f"/uws/jobs/{job_id}/parameters"):
        r = await memory_stack.client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert b"\xef\xbf\xbd" in r.content  # U+FFFD where the control characters were


# --- 4. listings after a cancel ----------------------------------------------------------------


async def cancel_caesar(stack: Stack, job_id: str) -> None:
    assert (await stack.client.post(f"{API}/job/{job_id}/cancel")).status_code == 200


async def abort_uws(stack: Stack, job_id: str) -> None:
    assert (await stack.client.post(f"/uws/jobs/{job_id}/phase", data={"PHASE": "ABORT"})).status_code == 303


async def delete_uws(stack: Stack, job_id: str) -> None:
    assert (await stack.client.delete(f"/uws/jobs/{job_id}")).status_code == 303


@pytest.mark.parametrize("cancel", [cancel_caesar, abort_uws, delete_uws])
async def test_job_listing_renders_after_cancel(
    memory_stack: Stack, file_id: str, cancel: Callable[[Stack, str], Any]
) -> None:
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 30})
    await cancel(memory_stack, job_id)
    r = await memory_stack.client.get(f"{API}/jobs")
    assert r.status_code == 200, r.text
    (job,) = [j for j in r.json() if j["job_id"] == job_id]
    requested = job["cancel_requested_at"]
    assert isinstance(requested, str) and requested.endswith("+00:00")
    assert "T" in requested and requested[:4].isdigit()


# --- 5. links in a job directory -----------------------------------------------------------------


@pytest.fixture
async def linked_job(memory_stack: Stack, file_id: str, tmp_path: Path) -> str:
    """A finished job whose directory holds only links out: to /etc/passwd and another user's files."""
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(job_id, {"SUCCESS"})
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    job_dir.mkdir(parents=True, exist_ok=True)
    other = memory_stack.settings.jobs_dir / "someone-else" / "job_x"
    other.mkdir(parents=True)
    (other / "catalog-x.dat").write_text("someone else's sources")
    (other / "catalog-x.json").write_text('{"secret": true}')
    (job_dir / "plot_x.png").symlink_to("/etc/passwd")
    (job_dir / "catalog-x.dat").symlink_to(other / "catalog-x.dat")
    (job_dir / "catalog_fitcomp-x.dat").symlink_to(other / "catalog-x.dat")
    (job_dir / "catalog-x.json").symlink_to(other / "catalog-x.json")
    (job_dir / "catalog_fitcomp-x.json").symlink_to(other / "catalog-x.json")
    return job_id


SECRETS = (b"root:", b"someone else", b"secret")


@pytest.mark.parametrize(
    "route", ["output-plot", "preview", "output-sources", "output-components", "sources", "source-components"]
)
async def test_product_routes_do_not_follow_links(memory_stack: Stack, linked_job: str, route: str) -> None:
    r = await memory_stack.client.get(f"{API}/job/{linked_job}/{route}")
    assert r.status_code == 404 and not any(s in r.content for s in SECRETS), r.text[:200]
    assert "Cannot find desired output" in r.json()["status"]


async def test_archive_and_uws_results_do_not_follow_links(memory_stack: Stack, linked_job: str) -> None:
    archive = await memory_stack.client.get(f"{API}/job/{linked_job}/output")
    assert archive.status_code == 200
    with tarfile.open(fileobj=BytesIO(archive.content)) as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
    assert not names & {"plot_x.png", "catalog-x.dat", "catalog-x.json"}
    results = await memory_stack.client.get(f"/uws/jobs/{linked_job}/results")
    assert results.status_code == 200 and b"plot_x.png" not in results.content
    for name in ("plot_x.png", "catalog-x.dat", "catalog-x.json"):
        assert (await memory_stack.client.get(f"/uws/jobs/{linked_job}/results/{name}")).status_code == 404


async def test_linked_job_directory_is_not_served(memory_stack: Stack, file_id: str, tmp_path: Path) -> None:
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(job_id, {"SUCCESS"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "plot_x.png").write_bytes(b"secret")
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    if job_dir.exists():
        for item in sorted(job_dir.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()
        job_dir.rmdir()
    job_dir.symlink_to(elsewhere, target_is_directory=True)
    for route in ("output-plot", "preview", "output"):
        r = await memory_stack.client.get(f"{API}/job/{job_id}/{route}")
        assert r.status_code != 200 and b"secret" not in r.content
    assert b"plot_x.png" not in (await memory_stack.client.get(f"/uws/jobs/{job_id}/results")).content


async def test_download_does_not_follow_links(memory_stack: Stack, file_id: str) -> None:
    (stored,) = memory_stack.settings.data_dir.rglob(f"{file_id}.*")
    stored.unlink()
    stored.symlink_to("/etc/passwd")
    r = await memory_stack.client.get(f"{API}/download/{file_id}")
    assert r.status_code == 404 and b"root:" not in r.content


# --- 6. request bodies in the OpenAPI document ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "media_types"),
    [
        (f"{API}/job", "post", {"application/json"}),
        (f"{API}/upload", "post", {"multipart/form-data"}),
        (f"{API}/download", "post", {"application/x-www-form-urlencoded"}),
        ("/offersets", "post", {"application/json", "application/yaml"}),
        ("/sessions", "post", {"application/json", "application/yaml"}),
        ("/sessions/{session_id}", "post", {"application/json", "application/yaml"}),
        ("/uws/jobs", "post", {"application/x-www-form-urlencoded"}),
        ("/uws/jobs/{job_id}", "post", {"application/x-www-form-urlencoded"}),
        ("/uws/jobs/{job_id}/phase", "post", {"application/x-www-form-urlencoded"}),
        ("/uws/jobs/{job_id}/destruction", "post", {"application/x-www-form-urlencoded"}),
    ],
)
async def test_request_bodies_are_declared(
    memory_stack: Stack, path: str, method: str, media_types: set[str]
) -> None:
    document = (await memory_stack.client.get("/openapi.json")).json()
    body = document["paths"][path][method]["requestBody"]
    assert set(body["content"]) == media_types
    assert all(content["schema"].get("type") == "object" for content in body["content"].values())


async def test_declared_bodies_change_no_parsing(memory_stack: Stack) -> None:
    """A body outside the declared schema is still read by the route itself, with its own messages."""
    r = await memory_stack.client.post(f"{API}/job", content=b"[]", headers=JSON)
    assert r.status_code == 400 and r.json()["status"] == "Invalid request data!"
    r = await memory_stack.client.post("/offersets", content="- a\n- b\n", headers=YAML)
    assert r.status_code == 400 and r.json()["message"] == "the request must be an object"
