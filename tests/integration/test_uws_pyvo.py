"""A real UWS client (pyvo) against the gateway served by uvicorn over real HTTP.

The five services run in memory (as ``cirasa dev`` does) in a thread of their own with their own event
loop; the test talks to them like any client would, with blocking HTTP calls.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from astropy.io.votable import parse_single_table
from pyvo.dal.tap import AsyncTAPJob
from pyvo.io.uws import parse_job_list

from cirasa.cli.runtime import SERVICES, build_service, http_app
from cirasa.common.bus import MemoryBroker
from cirasa.common.settings import Settings
from tests.conftest import API

pytestmark = pytest.mark.slow  # runs the sep finder for real


class LiveGateway:
    """All five services and the gateway's HTTP on a free loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))  # the port is ours before uvicorn starts: no race for it
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or stop()
            self.error = exc

    async def _serve(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        broker = MemoryBroker()
        services = [build_service(name, self.settings, broker) for name in SERVICES]
        for service in services:
            await service.start()
        config = uvicorn.Config(http_app(services), log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            for service in reversed(services):
                await service.stop()

    def start(self, timeout_s: float = 30) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while self.server is None or not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "the gateway thread did not stop"
        assert self.error is None, self.error


@pytest.fixture
def live_gateway(settings: Settings) -> Iterator[LiveGateway]:
    gateway = LiveGateway(settings)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


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
