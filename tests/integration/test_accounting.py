"""Accounting from events: per-user usage and platform stats in caesar-rest's field names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cirasa.accounting.service import PLATFORM_USAGE_EVERY_S, Accounting
from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import JobState, JobStateChanged, JobSubmitted, Resources, UsageUpdated
from cirasa.common.settings import Settings
from tests.conftest import API, Stack, wait_for
from tests.integration.test_outbox import Counted


async def test_usage_counts_every_outcome(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    ok = await memory_stack.submit("sleep", file_id, {"seconds": 0.3})
    failed = await memory_stack.submit("sleep", file_id, {"seconds": 0.1, "exit-code": 3})
    aborted = await memory_stack.submit("cutex", file_id, {"seedthr": 5})
    for job_id, state in ((ok, "SUCCESS"), (failed, "FAILURE"), (aborted, "ABORTED")):
        assert (await memory_stack.wait_state(job_id, {state}))["state"] == state

    async def settled() -> dict[str, Any] | None:
        r = await memory_stack.client.get(f"{API}/accounting")
        usage = r.json() if r.status_code == 200 else {}
        return usage if usage.get("njobs_aborted") == 1 and usage.get("njobs_completed") == 1 else None

    usage = await wait_for(settled, 20, "the usage to count all three jobs")
    assert usage["njobs"] == 3 and usage["njobs_failed"] == 1
    assert usage["njobs_pending"] == 0 and usage["njobs_running"] == 0
    assert usage["job_completed_runtime"] >= 0.3 and usage["job_runtime"] >= usage["job_completed_runtime"]
    assert usage["datasize"] > 0 and usage["jobsize"] > 0

    async def platform_settled() -> dict[str, Any] | None:  # recomputed every few seconds only
        stats = (await memory_stack.client.get(f"{API}/appstats")).json()
        return stats if stats.get("njobs_completed") == 1 and stats.get("njobs_aborted") == 1 else None

    stats = await wait_for(platform_settled, 20, "the platform's usage to count all three jobs")
    assert stats["nusers"] == 1 and stats["njobs"] == 3
    assert stats["avg_completed_job_runtime"] == stats["job_completed_runtime"]


async def test_broker_proposals_count_only_once_accepted(memory_stack: Stack, fits_image: Path) -> None:
    from cirasa.gateway.broker import kinds

    file_id = await memory_stack.upload(fits_image)
    request = {
        "executable": {
            "kind": kinds.CIRASA_APP,
            "app": "sleep",
            "options": {"seconds": 0.1},
            "inputs": [file_id],
        }
    }
    offers = (await memory_stack.client.post("/offersets", json=request)).json()["offers"]
    job_id = await memory_stack.submit("sleep", file_id, {"seconds": 0.1})
    await memory_stack.wait_state(job_id, {"SUCCESS"})

    async def njobs(n: int) -> dict[str, Any] | None:
        r = await memory_stack.client.get(f"{API}/accounting")
        usage = r.json() if r.status_code == 200 else {}
        return usage if usage.get("njobs") == n and usage.get("njobs_pending") == 0 else None

    assert (await wait_for(lambda: njobs(1), 20, "one job counted"))["njobs_completed"] == 1
    accepted = await memory_stack.client.post(
        f"/sessions/{offers[0]['meta']['uuid']}",
        json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
    )
    assert accepted.status_code == 200
    assert (await wait_for(lambda: njobs(2), 30, "the accepted session counted"))["njobs_completed"] == 2


def accounting(settings: Settings, broker: MemoryBroker) -> Accounting:
    """An accounting service on its database, not started: its handlers and its round, called by hand."""
    service = build_service("accounting", settings, broker)
    assert isinstance(service, Accounting)
    return service


def clocked_accounting(
    settings: Settings, broker: MemoryBroker, monkeypatch: Any
) -> tuple[Accounting, list[float]]:
    """An accounting service whose monotonic clock the test moves (``clock[0]``)."""
    clock = [1000.0]
    monkeypatch.setattr("cirasa.accounting.service.time.monotonic", lambda: clock[0])
    return accounting(settings, broker), clock


def changed(job: str, seq: int, state: JobState, user: str = "ann") -> JobStateChanged:
    return JobStateChanged(correlation_id=job, job_id=job, user=user, app="sleep", state=state, seq=seq)


def usage_published(broker: MemoryBroker) -> list[str]:
    return [e.user for e in broker.published if isinstance(e, UsageUpdated)]


async def test_each_event_is_one_store_write_and_stale_ones_change_nothing(settings: Settings) -> None:
    service = accounting(settings, MemoryBroker())
    jobs = Counted(service.jobs.raw)
    service.jobs.raw = jobs  # type: ignore[assignment]
    submitted = JobSubmitted(
        correlation_id="j", job_id="j", user="ann", app="sleep", offer_id="o", platform="local",
        backend="local", resources=Resources(cores=1, memory_gib=1, duration_s=60),
    )  # fmt: skip
    await service.on_job_submitted(submitted)
    for ev in (
        changed("j", 2, JobState.RUNNING),
        changed("j", 1, JobState.PENDING),  # stale
        changed("j", 2, JobState.RUNNING),  # the same again
        changed("j", 3, JobState.SUCCESS),
        changed("j", 4, JobState.RUNNING),  # after the end
        changed("k", 2, JobState.RUNNING),  # a job not seen yet
    ):
        await service.on_job_state_changed(ev)
    assert jobs.calls == ["update_one"] * 7
    j, k = [await service.jobs.get(job) for job in "jk"]
    assert j is not None and (j.state, j.seq, j.user) == ("SUCCESS", 3, "ann")
    assert k is not None and (k.state, k.seq, k.user, k.app) == ("RUNNING", 2, "ann", "sleep")


async def test_usage_is_published_once_per_user_and_round_and_again_after_a_restart(
    settings: Settings,
) -> None:
    broker = MemoryBroker()
    service = accounting(settings, broker)
    for seq, state in enumerate((JobState.RUNNING, JobState.SUCCESS), start=1):
        await service.on_job_state_changed(changed("j", seq, state))
    await service.on_job_state_changed(changed("k", 1, JobState.RUNNING, user="bob"))
    await service.publish_dirty()
    assert sorted(usage_published(broker)) == ["*", "ann", "bob"]
    await service.publish_dirty()
    assert len(usage_published(broker)) == 3  # nothing new: nothing published
    broker.published.clear()
    restarted = accounting(settings, broker)  # the marks were in memory: a new process has none
    await restarted.publish_dirty()
    assert sorted(usage_published(broker)) == ["*", "ann", "bob"]
    usage = await restarted.usage.get("*")
    assert usage is not None and usage.current["nusers"] == 2 and usage.current["njobs_completed"] == 1


async def test_the_platform_usage_is_recomputed_every_few_seconds_and_never_dropped(
    settings: Settings, monkeypatch: Any
) -> None:
    broker = MemoryBroker()
    service, clock = clocked_accounting(settings, broker, monkeypatch)
    await service.on_job_state_changed(changed("j", 1, JobState.RUNNING))
    await service.publish_dirty()
    assert sorted(usage_published(broker)) == ["*", "ann"]
    broker.published.clear()
    await service.on_job_state_changed(changed("j", 2, JobState.SUCCESS))
    await service.publish_dirty()
    assert usage_published(broker) == ["ann"]  # the platform's sum waits ...
    clock[0] += PLATFORM_USAGE_EVERY_S
    await service.publish_dirty()
    assert usage_published(broker) == ["ann", "*"]  # ... and comes, with no new event
    usage = await service.usage.get("*")
    assert usage is not None and usage.current["njobs_completed"] == 1


async def test_a_costly_recount_is_due_again_only_after_twenty_times_its_cost(
    settings: Settings, monkeypatch: Any
) -> None:
    broker = MemoryBroker()
    service, clock = clocked_accounting(settings, broker, monkeypatch)
    user_usage = service.user_usage

    async def slow_usage(user: str) -> dict[str, Any]:
        clock[0] += 0.5  # as a recount over many jobs takes
        return await user_usage(user)

    monkeypatch.setattr(service, "user_usage", slow_usage)
    await service.on_job_state_changed(changed("j", 1, JobState.RUNNING))
    await service.publish_dirty()
    assert "ann" in usage_published(broker)
    broker.published.clear()
    await service.on_job_state_changed(changed("j", 2, JobState.SUCCESS))
    clock[0] += 5.0
    await service.publish_dirty()
    assert "ann" not in usage_published(broker)  # due 10 s after the last one started
    clock[0] += 5.0
    await service.publish_dirty()  # no new event: the mark was kept
    assert usage_published(broker).count("ann") == 1
    usage = await service.usage.get("ann")
    assert usage is not None and usage.current["njobs_completed"] == 1
