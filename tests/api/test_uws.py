"""The UWS 1.1 view of jobs (``/uws``), in memory: XML that vo-models reads back, filters, WAIT,
ABORT, DELETE, results, and 4xx for what UWS refuses."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from vo_models.uws import Jobs, Parameters, Results
from vo_models.uws.types import ErrorType, ExecutionPhase

from cirasa.gateway.uws import JobParameters, UWSJob, parse_time, quote_of
from tests.conftest import API, Stack, wait_for

UWS = "/uws/jobs"
ENDED = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}


async def job_xml(stack: Stack, job_id: str, **params: Any) -> UWSJob:
    r = await stack.client.get(f"{UWS}/{job_id}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    return UWSJob.from_xml(r.content)


async def job_list(stack: Stack, params: Any = None) -> list[tuple[str, ExecutionPhase]]:
    r = await stack.client.get(UWS, params=params)
    assert r.status_code == 200, r.text
    jobs = Jobs.from_xml(r.content)
    assert jobs.version is not None and jobs.version.value == "1.1"
    return [(ref.job_id, ref.phase) for ref in jobs.jobref or []]


async def phase(stack: Stack, job_id: str) -> str:
    r = await stack.client.get(f"{UWS}/{job_id}/phase")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


async def wait_phase(stack: Stack, job_id: str, phases: set[str], timeout_s: float = 60) -> str:
    async def probe() -> str | None:
        current = await phase(stack, job_id)
        return current if current in phases else None

    return await wait_for(probe, timeout_s, f"job {job_id} to reach {phases}")


async def sleep_job(stack: Stack, file_id: str, seconds: float, **extra: Any) -> str:
    return await stack.submit("sleep", file_id, {"seconds": seconds, **extra})


async def test_job_list_and_its_filters(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    done = []
    for _ in range(3):
        done.append(await sleep_job(memory_stack, file_id, 0.1))
        await memory_stack.wait_state(done[-1], ENDED)
        await asyncio.sleep(0.01)  # distinct creation times
    failed = await sleep_job(memory_stack, file_id, 0.1, **{"exit-code": 3})
    await memory_stack.wait_state(failed, ENDED)

    listed = await job_list(memory_stack)
    assert [j for j, _ in listed] == [failed, *reversed(done)]  # newest first
    assert dict(listed) == {**{j: ExecutionPhase.COMPLETED for j in done}, failed: ExecutionPhase.ERROR}

    assert {j for j, _ in await job_list(memory_stack, {"PHASE": "COMPLETED"})} == set(done)
    assert [j for j, _ in await job_list(memory_stack, {"PHASE": "ERROR"})] == [failed]
    both = await job_list(memory_stack, [("PHASE", "ERROR"), ("PHASE", "COMPLETED")])
    assert len(both) == 4
    assert await job_list(memory_stack, {"PHASE": "EXECUTING"}) == []
    assert await job_list(memory_stack, {"phase": "error"}) == [(failed, ExecutionPhase.ERROR)]

    assert [j for j, _ in await job_list(memory_stack, {"LAST": 2})] == [failed, done[2]]
    first = await job_xml(memory_stack, done[0])
    assert first.creation_time is not None
    after = first.creation_time.isoformat().replace("+00:00", "Z")
    assert [j for j, _ in await job_list(memory_stack, {"AFTER": after})] == [failed, done[2], done[1]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await job_list(memory_stack, {"AFTER": future}) == []
    combined = await job_list(memory_stack, {"PHASE": "COMPLETED", "AFTER": after, "LAST": 1})
    assert combined == [(done[2], ExecutionPhase.COMPLETED)]

    for bad in ({"PHASE": "FINISHED"}, {"AFTER": "yesterday"}, {"LAST": "0"}, {"LAST": "two"}):
        r = await memory_stack.client.get(UWS, params=bad)
        assert r.status_code == 400, bad
        assert r.headers["content-type"].startswith("text/plain") and next(iter(bad)) in r.text


async def test_completed_job_resource_parameters_and_results(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    r = await memory_stack.client.post(
        f"{API}/job",
        json={"app": "sep", "data_inputs": file_id, "job_inputs": {"seedthr": 5}, "tag": "run-7"},
    )
    job_id = r.json()["job_id"]
    assert (await memory_stack.wait_state(job_id, ENDED))["state"] == "SUCCESS"

    r = await memory_stack.client.get(f"{UWS}/{job_id}")
    job = UWSJob.from_xml(r.content)
    # vo-models writes back what it read (but results: a parsed ResultReference loses its attributes
    # when written, since from_xml sets its ``any_attrs`` to {}; those are checked one by one below).
    again = UWSJob.from_xml(job.model_copy(update={"results": None}).to_xml())
    assert again.model_copy(update={"results": job.results}) == job
    assert b'version="1.1"' in r.content and b'<uws:ownerId xsi:nil="true"' in r.content
    assert job.job_id == job_id and job.run_id == "run-7" and job.owner_id is None
    assert job.phase == ExecutionPhase.COMPLETED and job.error_summary is None
    assert job.creation_time and job.start_time and job.end_time
    assert job.creation_time <= job.start_time <= job.end_time
    assert job.execution_duration == 1800 and job.destruction is None
    stored = await memory_stack.services["gateway"].db["jobs"].find_one({"_id": job_id})
    assert stored is not None
    planned = parse_time(stored.get("quote")) or job.start_time + timedelta(seconds=1800)
    assert job.quote is not None and abs(job.quote - planned) < timedelta(milliseconds=1)
    assert isinstance(job.parameters, JobParameters)
    params = {p.id: p.value for p in job.parameters.parameter}
    assert params == {"app": "sep", "data_inputs": file_id, "seedthr": "5"}

    texts = {
        prop: (await memory_stack.client.get(f"{UWS}/{job_id}/{prop}")).text
        for prop in ("phase", "executionduration", "destruction", "owner", "quote")
    }
    assert texts["phase"] == "COMPLETED" and texts["executionduration"] == "1800"
    assert texts["destruction"] == "" and texts["owner"] == ""
    assert texts["quote"].endswith("Z") and datetime.fromisoformat(texts["quote"]) == job.quote
    assert (await memory_stack.client.get(f"{UWS}/{job_id}/error")).status_code == 404

    r = await memory_stack.client.get(f"{UWS}/{job_id}/parameters")
    assert Parameters.from_xml(r.content) is not None
    assert {p.id for p in JobParameters.from_xml(r.content).parameter} == {"app", "data_inputs", "seedthr"}

    r = await memory_stack.client.get(f"{UWS}/{job_id}/results")
    results = {ref.id: ref for ref in (Results.from_xml(r.content).results or [])}
    assert job.results is not None and {ref.id for ref in job.results.results or []} == set(results)
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    catalog = next(job_dir.glob("catalog-*.json")).name
    assert {catalog, catalog.replace(".json", ".vot"), catalog.replace(".json", ".csv"), "archive"} <= set(
        results
    )
    assert any(name.startswith("ds9-") for name in results) and any(n.startswith("plot_") for n in results)
    assert not any(name.startswith(".") for name in results)  # the control directory is no product
    ref = results[catalog]
    assert ref.mime_type == "application/json" and ref.size == (job_dir / catalog).stat().st_size
    assert ref.href == f"http://gateway{UWS}/{job_id}/results/{catalog}"
    got = await memory_stack.client.get(ref.href)
    assert got.status_code == 200 and got.content == (job_dir / catalog).read_bytes()
    assert got.headers["content-type"].startswith("application/json")
    vot = await memory_stack.client.get(results[catalog.replace(".json", ".vot")].href or "")
    assert vot.status_code == 200 and b"VOTABLE" in vot.content
    archive = await memory_stack.client.get(results["archive"].href or "")
    assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"

    (job_dir / "secret.txt").write_text("not a product")
    for name in ("secret.txt", ".cirasa", "..%2F..%2Fdata", "nosuch.json", "archive"):
        r = await memory_stack.client.get(f"{UWS}/{job_id}/results/{name}")
        assert r.status_code == 404, name
    r = await memory_stack.client.get(f"{UWS}/{job_id}/results/..%2F{catalog}")
    assert r.status_code == 404


def test_quote_prefers_the_planner_estimate() -> None:
    job: dict[str, Any] = {"submit_date": "2030-01-01T00:00:00+00:00", "state": "PENDING"}
    assert quote_of(job) is None  # no offer accepted yet: nothing to say
    job["resources"] = {"cores": 1, "memory_gib": 1.0, "duration_s": 600}
    assert quote_of(job) == datetime(2030, 1, 1, 0, 10, tzinfo=UTC)
    job["offer_start"] = "2030-01-01T01:00:00Z"
    assert quote_of(job) == datetime(2030, 1, 1, 1, 10, tzinfo=UTC)
    job["start_date"] = "2030-01-01T03:00:00+02:00"  # stored offsets are honoured
    assert quote_of(job) == datetime(2030, 1, 1, 1, 10, tzinfo=UTC)
    job["quote"] = "2030-01-02T00:00:00+00:00"
    assert quote_of(job) == datetime(2030, 1, 2, tzinfo=UTC)
    job["quote"] = None  # the planner had no estimate
    assert quote_of(job) == datetime(2030, 1, 1, 1, 10, tzinfo=UTC)


async def test_failed_job_has_an_error_summary(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await sleep_job(memory_stack, file_id, 0.1, **{"exit-code": 3})
    assert (await memory_stack.wait_state(job_id, ENDED))["state"] == "FAILURE"
    job = await job_xml(memory_stack, job_id)
    assert job.phase == ExecutionPhase.ERROR and job.error_summary is not None
    assert job.error_summary.type == ErrorType.FATAL and job.error_summary.has_detail
    assert "3" in job.error_summary.message
    r = await memory_stack.client.get(f"{UWS}/{job_id}/error")
    assert r.status_code == 200 and r.text == job.error_summary.message


async def test_abort_a_running_job(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await sleep_job(memory_stack, file_id, 30)
    await wait_phase(memory_stack, job_id, {"EXECUTING"})
    job = await job_xml(memory_stack, job_id)
    assert job.start_time is not None and job.end_time is None and job.results is not None
    assert job.results.results == []  # nothing listed while it runs

    bad = await memory_stack.client.post(f"{UWS}/{job_id}/phase", data={"PHASE": "SUSPEND"})
    assert bad.status_code == 400
    run = await memory_stack.client.post(f"{UWS}/{job_id}/phase", data={"PHASE": "RUN"})
    assert run.status_code == 303  # already running: nothing to do

    r = await memory_stack.client.post(f"{UWS}/{job_id}/phase", data={"PHASE": "ABORT"})
    assert r.status_code == 303 and r.headers["location"] == f"http://gateway{UWS}/{job_id}"
    assert await wait_phase(memory_stack, job_id, {"ABORTED", "ERROR", "COMPLETED"}, 20) == "ABORTED"
    assert (await memory_stack.status(job_id))["state"] == "CANCELED"
    job = await job_xml(memory_stack, job_id)
    assert job.end_time is not None and job.error_summary is not None
    assert job.error_summary.type == ErrorType.TRANSIENT
    error = await memory_stack.client.get(f"{UWS}/{job_id}/error")
    assert error.status_code == 200 and error.text == job.error_summary.message

    again = await memory_stack.client.post(f"{UWS}/{job_id}/phase", params={"PHASE": "ABORT"})
    assert again.status_code == 303  # idempotent
    rerun = await memory_stack.client.post(f"{UWS}/{job_id}/phase", data={"PHASE": "RUN"})
    assert rerun.status_code == 409


async def test_delete_cancels_and_hides(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    running = await sleep_job(memory_stack, file_id, 30)
    finished = await sleep_job(memory_stack, file_id, 0.1)
    await memory_stack.wait_state(finished, ENDED)
    await wait_phase(memory_stack, running, {"EXECUTING"})

    r = await memory_stack.client.delete(f"{UWS}/{running}")
    assert r.status_code == 303 and r.headers["location"] == f"http://gateway{UWS}"
    assert [j for j, _ in await job_list(memory_stack)] == [finished]
    for path in ("", "/phase", "/results", "/parameters"):
        assert (await memory_stack.client.get(f"{UWS}/{running}{path}")).status_code == 404
    assert (await memory_stack.client.delete(f"{UWS}/{running}")).status_code == 404
    status = await memory_stack.wait_state(running, ENDED, timeout_s=20)  # caesar still sees it
    assert status["state"] == "CANCELED"

    bad = await memory_stack.client.post(f"{UWS}/{finished}", data={"ACTION": "ARCHIVE"})
    assert bad.status_code == 400
    r = await memory_stack.client.post(f"{UWS}/{finished}", data={"ACTION": "DELETE"})
    assert r.status_code == 303 and r.headers["location"] == f"http://gateway{UWS}"
    assert await job_list(memory_stack) == []
    assert (await memory_stack.client.get(f"{API}/job/{finished}/status")).json()["state"] == "SUCCESS"


async def test_wait_blocks_until_the_phase_changes(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    # Long enough that the job is still running when the third wait begins, on a loaded machine too.
    job_id = await sleep_job(memory_stack, file_id, 4)
    await wait_phase(memory_stack, job_id, {"EXECUTING"})

    started = time.monotonic()
    unchanged = await job_xml(memory_stack, job_id, PHASE="QUEUED", WAIT=30)  # not in that phase
    assert unchanged.phase == ExecutionPhase.EXECUTING and time.monotonic() - started < 1

    started = time.monotonic()
    bounded = await job_xml(memory_stack, job_id, WAIT=0.3)
    assert bounded.phase == ExecutionPhase.EXECUTING and time.monotonic() - started >= 0.3

    started = time.monotonic()
    changed = await job_xml(memory_stack, job_id, WAIT=30, PHASE="EXECUTING")
    waited = time.monotonic() - started
    assert changed.phase == ExecutionPhase.COMPLETED and 0.2 < waited < 20

    started = time.monotonic()
    ended = await job_xml(memory_stack, job_id, WAIT=-1)  # ended: nothing to wait for
    assert ended.phase == ExecutionPhase.COMPLETED and time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("method", "path", "params", "code"),
    [
        ("GET", "/JOB", None, 404),
        ("GET", "/JOB/phase", None, 404),
        ("GET", "/JOB/results/catalog.json", None, 404),
        ("POST", "/JOB/phase", {"PHASE": "ABORT"}, 404),
        ("DELETE", "/JOB", None, 404),
        ("GET", "/../../caesar", None, 404),
        ("GET", "/KNOWN", {"WAIT": "soon"}, 400),
        ("GET", "/KNOWN", {"PHASE": "DONE"}, 400),
        ("POST", "/KNOWN/phase", None, 400),
        ("POST", "/KNOWN", None, 400),
        ("POST", "", {"RUNID": "x"}, 405),
        ("POST", "/KNOWN/executionduration", {"EXECUTIONDURATION": "5"}, 405),
        ("POST", "/KNOWN/destruction", {"DESTRUCTION": "2030-01-01T00:00:00Z"}, 405),
        ("PUT", "/KNOWN/phase", None, 405),
    ],
)
async def test_refusals(
    memory_stack: Stack, fits_image: Path, method: str, path: str, params: Any, code: int
) -> None:
    file_id = await memory_stack.upload(fits_image)
    known = await sleep_job(memory_stack, file_id, 0.1)
    url = UWS + path.replace("/JOB", "/" + "0" * 32).replace("/KNOWN", f"/{known}")
    data = params if method == "POST" else None
    query = params if method != "POST" else None
    r = await memory_stack.client.request(method, url, params=query, data=data)
    assert r.status_code == code, r.text
    if code != 405 or method == "POST":
        assert r.text
    await memory_stack.wait_state(known, ENDED)


async def test_jobs_of_the_caesar_api_are_the_uws_jobs(memory_stack: Stack, fits_image: Path) -> None:
    """Both views read one model: every caesar job is listed, with its state mapped."""
    file_id = await memory_stack.upload(fits_image)
    job_id = await sleep_job(memory_stack, file_id, 0.1)
    await memory_stack.wait_state(job_id, ENDED)
    caesar = (await memory_stack.client.get(f"{API}/jobs")).json()
    assert [j["job_id"] for j in caesar] == [j for j, _ in await job_list(memory_stack)]
    r = await memory_stack.client.get(UWS, headers={"accept": "application/xml"})
    assert isinstance(r, httpx.Response) and r.content.startswith(b"<?xml")
