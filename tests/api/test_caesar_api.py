"""The caesar-rest compatible API, in memory: shapes, and bad input getting a 4xx that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cirasa.common.settings import GatewaySettings
from tests.conftest import API, Stack, start_stack, stop_stack


async def snapshot(stack: Stack) -> tuple[Any, ...]:
    """Everything a rejected request must leave untouched."""
    files = (await stack.client.get(f"{API}/fileids")).json()
    jobs = (await stack.client.get(f"{API}/jobs")).json()
    stored = sorted(str(p) for p in stack.settings.data_dir.rglob("*") if p.is_file())
    published = len(stack.memory.published) if stack.memory else 0
    return files, jobs, stored, published


async def test_upload_list_download_delete(memory_stack: Stack, fits_image: Path) -> None:
    r = await memory_stack.client.post(
        f"{API}/upload", files={"file": ("sky.fits", fits_image.read_bytes())}, data={"tag": "t1"}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"filename_orig", "tag", "format", "size", "uuid", "date", "status"}
    assert body["format"] == "fits" and body["tag"] == "t1" and len(body["uuid"]) == 32
    assert isinstance(body["size"], float)
    listing = (await memory_stack.client.get(f"{API}/fileids")).json()
    assert [f["fileid"] for f in listing] == [body["uuid"]]
    assert set(listing[0]) == {
        "fileid",
        "filename_orig",
        "fileext",
        "filesize",
        "filedate",
        "metadata",
        "tag",
    }
    got = await memory_stack.client.get(f"{API}/download/{body['uuid']}")
    assert got.status_code == 200 and got.content == fits_image.read_bytes()
    assert "attachment" in got.headers["content-disposition"]
    redirect = await memory_stack.client.get(f"{API}/download", params={"uuid": body["uuid"]})
    assert redirect.status_code == 302 and redirect.headers["location"].endswith(body["uuid"])
    assert (await memory_stack.client.get(f"{API}/delete/{body['uuid']}")).status_code == 405
    deleted = await memory_stack.client.post(f"{API}/delete/{body['uuid']}")
    assert deleted.status_code == 200 and "deleted" in deleted.json()["status"]
    assert (await memory_stack.client.get(f"{API}/fileids")).json() == []
    assert (await memory_stack.client.get(f"{API}/download/{body['uuid']}")).status_code == 404
    assert not any(p.is_file() for p in memory_stack.settings.data_dir.rglob("*.fits"))


async def test_apps_and_describe(memory_stack: Stack) -> None:
    apps = (await memory_stack.client.get(f"{API}/apps")).json()["apps"]
    assert {"sep", "aegean", "pybdsf", "photutils", "cutex", "mrcnn"} <= set(apps)
    desc = (await memory_stack.client.get(f"{API}/app/sep/describe")).json()
    assert desc["seedthr"]["type"] == "float" and desc["seedthr"]["enum"] is False
    assert desc["no-clean"]["type"] == "none" and desc["no-clean"]["advanced"] in (0, 1)
    unknown = await memory_stack.client.get(f"{API}/app/nosuch/describe")
    assert unknown.status_code == 400 and unknown.json()["status"] == "Unknown app nosuch!"


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (None, 400, "Invalid request data"),
        ({}, 400, "Invalid request data"),
        ({"job_inputs": {"seedthr": 5}, "data_inputs": "FILE"}, 400, "No app name"),
        ({"app": "sep", "data_inputs": "FILE"}, 400, "No job inputs"),
        ({"app": "sep", "job_inputs": {"seedthr": 5}}, 400, "No data inputs"),
        ({"app": "sep", "job_inputs": {"seedthr": 5}, "data_inputs": "0" * 32}, 400, "Cannot find file"),
        ({"app": "nosuch", "job_inputs": {"x": 1}, "data_inputs": "FILE"}, 400, "not known"),
        ({"app": "sep", "job_inputs": {"seedthr": "high"}, "data_inputs": "FILE"}, 400, "seedthr"),
        ({"app": "sep", "job_inputs": {"seedthr": 1e9}, "data_inputs": "FILE"}, 400, "seedthr"),
        ({"app": "sep", "job_inputs": {"minarea": 2.5}, "data_inputs": "FILE"}, 400, "minarea"),
        ({"app": "sep", "job_inputs": {"minarea": True}, "data_inputs": "FILE"}, 400, "minarea"),
        ({"app": "sep", "job_inputs": {"no-clean": 1}, "data_inputs": "FILE"}, 400, "no-clean"),
        ({"app": "sep", "job_inputs": [1, 2], "data_inputs": "FILE"}, 400, "not a dictionary"),
    ],
)
async def test_bad_job_requests_change_nothing(
    memory_stack: Stack, fits_image: Path, body: Any, code: int, fragment: str
) -> None:
    file_id = await memory_stack.upload(fits_image)
    if isinstance(body, dict) and body.get("data_inputs") == "FILE":
        body["data_inputs"] = file_id
    before = await snapshot(memory_stack)
    if body is None:
        r = await memory_stack.client.post(
            f"{API}/job", content=b"not json", headers={"content-type": "application/json"}
        )
    else:
        r = await memory_stack.client.post(f"{API}/job", json=body)
    assert r.status_code == code, r.text
    reply = r.json()
    assert fragment in reply["status"] and reply["state"] == "ABORTED" and reply["job_id"] == ""
    assert await snapshot(memory_stack) == before


async def test_unknown_options_are_reported_not_fatal(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    r = await memory_stack.client.post(
        f"{API}/job",
        json={"app": "sep", "data_inputs": file_id, "job_inputs": {"seedthr": 6, "no-mpi": True}},
    )
    assert r.status_code == 202
    assert r.json()["ignored_options"] == ["no-mpi"]


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("notes.txt", b"hello", 415),
        ("fake.fits", b"this is not a fits file at all" * 10, 415),
        ("fake.png", b"GIF89a" + b"\0" * 100, 415),
    ],
)
async def test_bad_uploads_change_nothing(memory_stack: Stack, name: str, content: bytes, code: int) -> None:
    before = await snapshot(memory_stack)
    r = await memory_stack.client.post(f"{API}/upload", files={"file": (name, content)})
    assert r.status_code == code
    assert r.json()["uuid"] == "" and r.json()["status"]
    assert await snapshot(memory_stack) == before


async def test_upload_without_file_part(memory_stack: Stack) -> None:
    before = await snapshot(memory_stack)
    r = await memory_stack.client.post(f"{API}/upload", data={"tag": "x"}, files={"other": ("a.fits", b"x")})
    assert r.status_code == 400 and "Missing file" in r.json()["status"]
    r = await memory_stack.client.post(
        f"{API}/upload", content=b"{}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert await snapshot(memory_stack) == before


async def test_oversize_upload_is_refused_while_streaming(settings: Any, tmp_path: Path) -> None:
    settings.gateway = GatewaySettings(max_upload_mib=1)
    stack = await start_stack(settings, memory=True)
    try:
        before = await snapshot(stack)
        big = b"SIMPLE  =                    T" + b" " * 50 + b"\0" * (2 * 1024 * 1024)

        async def body() -> Any:  # no content-length: the limit must hold while streaming
            boundary = b"--XyZ"
            yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.fits"\r\n\r\n'
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]
            yield b"\r\n" + boundary + b"--\r\n"

        r = await stack.client.post(
            f"{API}/upload", content=body(), headers={"content-type": "multipart/form-data; boundary=XyZ"}
        )
        assert r.status_code == 413 and "too large" in r.json()["status"]
        assert await snapshot(stack) == before
        assert not any(p.is_file() for p in settings.data_dir.rglob("*"))
    finally:
        await stop_stack(stack)


async def test_unknown_ids(memory_stack: Stack) -> None:
    jid = "f" * 32
    status = await memory_stack.client.get(f"{API}/job/{jid}/status")
    assert status.status_code == 404
    assert set(status.json()) == {"job_id", "pid", "state", "status", "exit_code", "elapsed_time", "tag"}
    for route in ("output", "sources", "preview", "output-plot"):
        assert (await memory_stack.client.get(f"{API}/job/{jid}/{route}")).status_code == 404
    assert (await memory_stack.client.post(f"{API}/job/{jid}/cancel")).status_code == 404
    assert (await memory_stack.client.get(f"{API}/download/{jid}")).status_code == 404
    assert (await memory_stack.client.get(f"{API}/download/..%2F..%2Fetc%2Fpasswd")).status_code == 404


async def test_container_only_app_is_aborted_with_reasons(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("cutex", file_id, {"seedthr": 5})
    status = await memory_stack.wait_state(job_id, {"ABORTED"}, timeout_s=10)
    assert "container image" in status["status"] and "local" in status["status"]
    output = await memory_stack.client.get(f"{API}/job/{job_id}/output")
    assert output.status_code == 202
