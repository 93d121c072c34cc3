"""A real UWS client (pyvo) against the gateway served by uvicorn over real HTTP.

The five services run in memory (as ``cirasa dev`` does) in a thread of their own with their own event
loop; the test talks to them like any client would, with blocking HTTP calls.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from astropy.io.votable import parse_single_table
from pyvo.dal.tap import AsyncTAPJob
from pyvo.io.uws import parse_job_list

from tests.conftest import API
from tests.live import LiveGateway

pytestmark = pytest.mark.slow  # runs the sep finder for real


def submit(url: str, app: str, file_id: str, options: dict[str, Any], tag: str) -> str:
    r = requests.post(
        f"{url}{API}/job",
        json={"app": app, "data_inputs": file_id, "job_inputs": options, "tag": tag},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def job_list(url: str, **params: Any) -> dict[str, Any]:
    r = requests.get(f"{url}/uws/jobs", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return {job.jobid: job for job in parse_job_list(io.BytesIO(r.content))}


def test_pyvo_lists_jobs_follows_one_to_completed_and_aborts_another(
    live_gateway: LiveGateway, fits_image: Path
) -> None:
    url = live_gateway.url
    with fits_image.open("rb") as fh:
        r = requests.post(f"{url}{API}/upload", files={"file": (fits_image.name, fh)}, timeout=30)
    assert r.status_code == 200, r.text
    file_id = r.json()["uuid"]
    finder = submit(url, "sep", file_id, {"seedthr": 5}, "pyvo-sep")
    sleeper = submit(url, "sleep", file_id, {"seconds": 60}, "pyvo-sleep")

    listed = job_list(url)
    assert set(listed) == {finder, sleeper}
    assert listed[finder].runid == "pyvo-sep" and listed[finder].phase in {"QUEUED", "EXECUTING"}
    assert listed[finder].creationtime is not None

    job = AsyncTAPJob(f"{url}/uws/jobs/{finder}", delete=False)
    assert job.job_id == finder and job.uws_version == "1.1" and job.owner is None
    job.wait(timeout=120)  # long polls with WAIT=-1 until the phase is final
    assert job.phase == "COMPLETED"
    job.raise_if_error()
    assert job.execution_duration.to_value("s") == 1800 and job.quote is not None
    summary = job.job
    params = {p.id_: p.content for p in summary.parameters}
    assert params == {"app": "sep", "data_inputs": file_id, "seedthr": "5"}
    results = {r.id_: r for r in job.results}
    vot = next(name for name in results if name.startswith("catalog-") and name.endswith(".vot"))
    assert results[vot].mimetype == "application/x-votable+xml" and results[vot].size > 0
    assert results[vot].href in job.result_uris
    fetched = requests.get(results[vot].href, timeout=30)
    assert fetched.status_code == 200
    table = parse_single_table(io.BytesIO(fetched.content)).to_table()
    assert len(table) >= 10  # the catalogue of the simulated sky

    assert set(job_list(url, PHASE="COMPLETED")) == {finder}
    other = AsyncTAPJob(f"{url}/uws/jobs/{sleeper}", delete=False)
    deadline = time.monotonic() + 30
    while other.phase != "EXECUTING":  # each read of .phase asks the server again
        assert time.monotonic() < deadline, other.phase
        time.sleep(0.1)
    other.abort()
    while other.phase != "ABORTED":
        assert time.monotonic() < deadline, other.phase
        time.sleep(0.1)
    with pytest.raises(Exception, match="Query Error"):
        other.raise_if_error()  # pyvo reports the errorSummary of an aborted job
    assert set(job_list(url, PHASE="ABORTED")) == {sleeper}
    assert list(job_list(url, LAST=1)) == [sleeper]

    other.delete()
    assert set(job_list(url)) == {finder}
    assert requests.get(f"{url}/uws/jobs/{sleeper}", timeout=30).status_code == 404
