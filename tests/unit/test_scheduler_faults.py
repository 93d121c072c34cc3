"""The scheduler under backend and store faults: a lost answer is no verdict, a cancel reaches a job
an earlier dispatcher may have started, and no job runs outside its booking."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from cirasa.backends import factory
from cirasa.backends.base import BackendUnavailable, DiscoveredJob, JobSpec, TrackedJob
from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import CancelRequested, InputFile, JobDispatched, JobSubmitted, Resources, utcnow
from cirasa.common.settings import Settings
from cirasa.scheduler.documents import Dispatch
from cirasa.scheduler.service import Scheduler
from cirasa.scheduler.timing import MAX_ATTEMPTS


@dataclass
class FaultyBackend:
    """Starts a job once per id; ``lose`` answers of submit are lost after the job started."""

    kind: str = "local"
    lose: int = 0
    raise_first: Exception | None = None  # raised by the first submit, before anything starts
    started: dict[str, JobSpec] = field(default_factory=dict)
    submits: int = 0
    canceled: list[str] = field(default_factory=list)

    def submit(self, spec: JobSpec) -> str:
        self.submits += 1
        if self.raise_first is not None:
            exc, self.raise_first = self.raise_first, None
            raise exc
        self.started.setdefault(spec.job_id, spec)
        if self.lose:
            self.lose -= 1
            raise ConnectionResetError("answer lost")
        return f"b-{spec.job_id}"

    def cancel(self, job: TrackedJob) -> None:
        self.canceled.append(job.job_id)

    def poll(self, jobs: Any) -> dict[str, Any]:
        return {}


class ListingBackend(FaultyBackend):
    """A backend that can list the jobs it started (``Discovering``)."""

    def discover(self) -> list[DiscoveredJob]:
        return [DiscoveredJob(job_id, f"b-{job_id}") for job_id in self.started]


@dataclass
class Rig:
    scheduler: Scheduler
    broker: MemoryBroker
    backend: FaultyBackend

    def dispatched(self) -> list[JobDispatched]:
        return [e for e in self.broker.published if isinstance(e, JobDispatched)]

    async def doc(self, job_id: str = "j1") -> Dispatch:
        doc = await self.scheduler.dispatches.get(job_id)
        assert doc is not None
        return doc

    async def make_due(self, job_id: str = "j1", *, claim_lapsed: bool = False) -> None:
        """Skip the back-off (and let a claim lapse), as time passing would."""
        changes: dict[str, Any] = {"not_before": utcnow() - timedelta(seconds=1)}
        if claim_lapsed:
            changes["claimed_at"] = utcnow() - timedelta(hours=1)
        await self.scheduler.dispatches.update({"_id": job_id}, {"$set": changes})


@pytest.fixture
def rig(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Rig:
    """A scheduler whose platform is ``rig.backend`` (a test may swap it before the first use)."""
    (settings.data_dir / "anonymous").mkdir(parents=True)
    (settings.data_dir / "anonymous" / "x.fits").write_bytes(b"SIMPLE")
    broker = MemoryBroker()
    scheduler = build_service("scheduler", settings, broker)
    assert isinstance(scheduler, Scheduler)
    made = Rig(scheduler, broker, FaultyBackend())
    monkeypatch.setitem(factory.FACTORIES, "local", lambda platform, s: made.backend)
    return made


def job(
    *, start: datetime | None = None, booked_until: datetime | None = None, duration_s: int = 60
) -> JobSubmitted:
    return JobSubmitted(
        correlation_id="j1",
        job_id="j1",
        offer_id="o1",
        platform="local",
        backend="local",
        resources=Resources(cores=1, memory_gib=1, duration_s=duration_s),
        app="sleep",
        inputs=[InputFile(file_id="f", relpath="anonymous/x.fits")],
        start=start,
        booked_until=booked_until,
    )


# --- 1. a lost answer of submit is no verdict --------------------------------------------------


async def test_a_lost_submit_answer_is_retried_not_failed(rig: Rig) -> None:
    rig.backend.lose = 1
    await rig.scheduler.on_job_submitted(job())
    assert rig.dispatched() == []  # no verdict yet
    assert (await rig.doc()).attempts == 1
    await rig.scheduler.dispatch_due()
    assert rig.dispatched() == []  # the back-off is not over
    await rig.make_due()
    await rig.scheduler.dispatch_due()
    [ev] = rig.dispatched()
    assert (ev.error, ev.backend_job_id) == (None, "b-j1")
    assert rig.backend.submits == 2 and list(rig.backend.started) == ["j1"]


async def test_submit_answers_lost_every_time_give_up_and_cancel(rig: Rig) -> None:
    rig.backend.lose = MAX_ATTEMPTS
    await rig.scheduler.on_job_submitted(job())
    for _ in range(MAX_ATTEMPTS - 1):
        await rig.make_due()
        await rig.scheduler.dispatch_due()
    assert rig.backend.submits == MAX_ATTEMPTS
    [ev] = rig.dispatched()
    assert ev.error and f"{MAX_ATTEMPTS} attempts" in ev.error and not ev.canceled
    assert rig.backend.canceled == ["j1"]  # it may be running: stopped before it is called failed
    assert (await rig.doc()).state == "FAILED"


async def test_a_job_found_on_its_backend_after_lost_answers_is_dispatched(rig: Rig) -> None:
    rig.backend = ListingBackend(lose=MAX_ATTEMPTS)
    await rig.scheduler.on_job_submitted(job())
    for _ in range(MAX_ATTEMPTS - 1):
        await rig.make_due()
        await rig.scheduler.dispatch_due()
    [ev] = rig.dispatched()
    assert (ev.error, ev.backend_job_id) == (None, "b-j1")  # the monitor follows it to its real end
    assert rig.backend.canceled == []


async def test_a_permanent_backend_error_fails_at_once(rig: Rig) -> None:
    rig.backend.raise_first = BackendUnavailable("no such backend")
    await rig.scheduler.on_job_submitted(job())
    [ev] = rig.dispatched()
    assert ev.error and "no such backend" in ev.error
    assert rig.backend.canceled == []


# --- 2. a cancel reaches a job an earlier dispatcher may have started --------------------------


async def _submitted_but_not_recorded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """submit succeeds, storing DISPATCHED fails; a cancel arrives before the claim lapses."""

    async def store_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("store down")

    with monkeypatch.context() as m:
        m.setattr(rig.scheduler, "_finish", store_down)
        with pytest.raises(ConnectionError):
            await rig.scheduler.on_job_submitted(job())
    assert list(rig.backend.started) == ["j1"]
    await rig.scheduler.on_job_submitted(job())  # the redelivery finds the claim
    await rig.scheduler.on_cancel_requested(CancelRequested(correlation_id="j1", job_id="j1"))
    await rig.make_due(claim_lapsed=True)
    await rig.scheduler.dispatch_due()


async def test_a_cancel_after_an_unrecorded_submit_reaches_the_backend(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _submitted_but_not_recorded(rig, monkeypatch)
    assert rig.backend.canceled == ["j1"]
    [ev] = rig.dispatched()
    assert ev.canceled


async def test_a_cancel_after_an_unrecorded_submit_lets_the_monitor_see_the_end(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.backend = ListingBackend()
    await _submitted_but_not_recorded(rig, monkeypatch)
    [ev] = rig.dispatched()
    assert (ev.error, ev.backend_job_id) == (None, "b-j1")  # its real end comes from the backend
    assert rig.backend.canceled == ["j1"]


async def test_a_cancel_before_any_claim_does_not_touch_the_backend(rig: Rig) -> None:
    await rig.scheduler.on_cancel_requested(CancelRequested(correlation_id="j1", job_id="j1"))
    await rig.scheduler.on_job_submitted(job())
    [ev] = rig.dispatched()
    assert ev.canceled and rig.backend.submits == 0 and rig.backend.canceled == []


# --- 3. never outside the booking --------------------------------------------------------------


async def test_not_dispatched_before_its_start(rig: Rig) -> None:
    await rig.scheduler.on_job_submitted(job(start=utcnow() + timedelta(seconds=0.3)))
    await rig.scheduler.dispatch_due()
    assert rig.backend.submits == 0


async def test_wall_time_is_cut_at_the_end_of_the_booking(rig: Rig) -> None:
    await rig.scheduler.on_job_submitted(job(booked_until=utcnow() + timedelta(seconds=20.5)))
    assert rig.backend.started["j1"].resources.duration_s == 20
    [ev] = rig.dispatched()
    assert ev.duration_s == 20


async def test_wall_time_without_booking_end_is_the_requested_one(rig: Rig) -> None:
    await rig.scheduler.on_job_submitted(job(booked_until=None, duration_s=60))
    assert rig.backend.started["j1"].resources.duration_s == 60


async def test_a_job_whose_booking_is_over_is_not_started(rig: Rig) -> None:
    now = utcnow()
    ev = job(start=now - timedelta(seconds=90), booked_until=now - timedelta(seconds=30))
    await rig.scheduler.on_job_submitted(ev)
    assert rig.backend.submits == 0
    [dispatched] = rig.dispatched()
    assert dispatched.error and "booked start passed 90 s ago" in dispatched.error
    assert "submit it again" in dispatched.error
