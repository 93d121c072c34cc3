"""The five services as separate processes on the real RabbitMQ, driven like a caesar-rest client would."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cirasa.cli.launcher import ProcessStack, free_port, stack_env
from tests.conftest import AMQP_URL, API, delete_topology

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessStack]:
    exchange = f"test.{uuid.uuid4().hex[:10]}"
    config = tmp_path / "config.yaml"
    config.write_text(
        "platforms:\n  - {name: local, backend: local, cores: 2, memory_gib: 4, max_duration_s: 3600}\n"
    )
    env = stack_env(
        tmp_path, exchange, AMQP_URL, {"CIRASA_CONFIG": str(config), "CIRASA_MONITOR__POLL_INTERVAL_S": "0.2"}
    )
    stack = ProcessStack(tmp_path, env, gateway_port=free_port())
    try:
        yield stack.start()
    finally:
        stack.stop()
        import asyncio

        asyncio.run(delete_topology(exchange))


def test_upload_run_follow_and_fetch(processes: ProcessStack, fits_image: Path) -> None:
    with httpx.Client(base_url=processes.gateway_url + API, timeout=30) as http:
        up = http.post("/upload", files={"file": ("sky.fits", fits_image.read_bytes())})
        assert up.status_code == 200
        # exactly the body caesar-rest's own client sends (research/caesar-rest.md §7), plus our app
        r = http.post(
            "/job",
            json={
                "app": "sep",
                "tag": "stresstest",
                "data_inputs": up.json()["uuid"],
                "job_inputs": {"seedthr": 5, "no-mpi": True},
            },
        )
        assert r.status_code == 202 and r.json()["state"] == "PENDING"
        job_id = r.json()["job_id"]
        seen: list[str] = []
        deadline = time.monotonic() + 90
        while True:
            status = http.get(f"/job/{job_id}/status").json()
            if not seen or seen[-1] != status["state"]:
                seen.append(status["state"])
            if status["state"] not in ("PENDING", "RUNNING") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status["state"] == "SUCCESS", status
        assert set(status) == {"job_id", "pid", "state", "status", "exit_code", "elapsed_time", "tag"}
        assert status["exit_code"] == 0 and isinstance(status["exit_code"], int)
        assert isinstance(status["elapsed_time"], float) and status["elapsed_time"] > 0
        assert seen[0] == "PENDING" and "RUNNING" in seen
        archive = http.get(f"/job/{job_id}/output")
        assert archive.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            names = tar.getnames()
        assert all(n.startswith(f"job_{job_id}") for n in names)
        assert any(n.endswith(".json") and "catalog-" in n for n in names)
        sources = http.get(f"/job/{job_id}/sources").json()
        assert len(sources["sources"]) >= 10
        jobs = http.get("/jobs").json()
        assert [j["job_id"] for j in jobs] == [job_id] and "job_top_dir" not in jobs[0]

        def accounting() -> dict[str, Any] | None:
            r = http.get("/accounting")
            return r.json() if r.status_code == 200 and r.json().get("njobs_completed") == 1 else None

        deadline = time.monotonic() + 20
        while (usage := accounting()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert usage is not None and usage["njobs"] == 1 and usage["datasize"] > 0
        while http.get("/appstats").json().get("nusers") != 1 and time.monotonic() < deadline + 10:
            time.sleep(0.2)  # the platform's usage is recomputed every few seconds only
        assert http.get("/appstats").json()["nusers"] == 1
