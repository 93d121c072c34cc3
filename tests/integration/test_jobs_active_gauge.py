"""``cirasa_jobs_active`` goes back to 0 when jobs end, and a restarted monitor reports it right at once."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from cirasa.cli.runtime import build_service
from cirasa.common.metrics import JOBS_ACTIVE
from cirasa.monitor.gauges import ActiveJobsGauge
from cirasa.monitor.service import Monitor
from tests.conftest import Stack, wait_for


def active(platform: str, state: str) -> float | None:
    return REGISTRY.get_sample_value("cirasa_jobs_active", {"platform": platform, "state": state})


def test_a_count_that_is_gone_reads_zero() -> None:
    gauge = ActiveJobsGauge(["gauge-a"])
    assert (active("gauge-a", "PENDING"), active("gauge-a", "RUNNING")) == (None, None)  # not yet
    gauge.publish({})
    assert (active("gauge-a", "PENDING"), active("gauge-a", "RUNNING")) == (0.0, 0.0)
    gauge.publish({("gauge-a", "RUNNING"): 3, ("gauge-b", "PENDING"): 1})
    assert (active("gauge-a", "RUNNING"), active("gauge-b", "PENDING")) == (3.0, 1.0)
    gauge.publish({})
    assert (active("gauge-a", "RUNNING"), active("gauge-b", "PENDING")) == (0.0, 0.0)


async def test_the_gauge_follows_jobs_and_survives_a_restart(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 30})
    await memory_stack.wait_state(job_id, {"RUNNING"})
    await memory_stack.services["monitor"].stop()
    JOBS_ACTIVE.clear()  # a new process: nothing reported yet
    monitor = build_service("monitor", memory_stack.settings, memory_stack.memory)  # the same store
    assert isinstance(monitor, Monitor)
    memory_stack.services["monitor"] = monitor
    await monitor.start()  # its first round counts what the store holds

    async def reported() -> bool:
        return active("local", "RUNNING") is not None

    await wait_for(reported, 5, "the restarted monitor's first round")
    assert (active("local", "RUNNING"), active("local", "PENDING")) == (1.0, 0.0)

    await memory_stack.client.post(f"/caesar/api/v1.0/job/{job_id}/cancel")
    await memory_stack.wait_state(job_id, {"CANCELED"})
    await monitor.poll()
    assert (active("local", "RUNNING"), active("local", "PENDING")) == (0.0, 0.0)
