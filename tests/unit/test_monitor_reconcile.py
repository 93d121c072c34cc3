"""Reconciliation: nothing stays PENDING or RUNNING forever."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import utcnow
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.monitor.service import Monitor


def job(job_id: str, **fields: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "_id": job_id,
        "state": "PENDING",
        "seq": 0,
        "user": "u",
        "platform": "batch",
        "backend": "local",
        "job_dir": f"u/job_{job_id}",
        "duration_s": 60,
        "created_at": now,
        "submitted_at": now,
        "outbox": [],
        **fields,
    }


async def test_stuck_jobs_are_ended(settings: Settings) -> None:
    settings.platforms = [
        PlatformConfig(name="batch", cores=1, memory_gib=1, max_duration_s=600, start_timeout_s=5)
    ]
    monitor = build_service("monitor", settings, MemoryBroker())
    assert isinstance(monitor, Monitor)
    long_ago = utcnow() - timedelta(hours=2)
    await monitor.jobs.raw.insert_many(
        [
            job("never-dispatched", dispatched=False, submitted_at=long_ago, not_before=long_ago),
            job("never-started", dispatched=True, dispatched_at=utcnow() - timedelta(seconds=10)),
            job("started-recently", dispatched=True, dispatched_at=utcnow() - timedelta(seconds=2)),
            job("overran", state="RUNNING", dispatched=True, dispatched_at=long_ago, started_at=long_ago),
        ]
    )
    await monitor.reconcile()
    states = {d.id: (d.state, d.status or "") async for d in monitor.jobs.find({})}
    assert states["never-dispatched"][0] == "FAILURE" and "not dispatched" in states["never-dispatched"][1]
    assert states["never-started"] == ("FAILURE", "Job did not start within 5 s of dispatch")
    assert states["started-recently"][0] == "PENDING"
    assert states["overran"][0] == "TIMED-OUT"
    events = [e for e in monitor.bus.broker.published]  # type: ignore[attr-defined]
    assert sorted(e.job_id for e in events) == ["never-dispatched", "never-started", "overran"]
