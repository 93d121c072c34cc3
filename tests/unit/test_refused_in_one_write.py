"""A task no platform could ever run is answered in the write that stores its proposal."""

from __future__ import annotations

from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker
from cirasa.common.events import JobState, JobStateChanged, OfferMade, ResourceRequest, TaskProposed
from cirasa.common.settings import Settings
from cirasa.planner.documents import Proposal
from cirasa.planner.service import Planner
from tests.integration.test_outbox import Counted


def too_long(name: str) -> TaskProposed:
    """Asks more wall time than the test platform allows (3600 s)."""
    return TaskProposed(correlation_id=name, app="sleep", resources=ResourceRequest(duration_s=7200))


async def a_planner(settings: Settings) -> tuple[Planner, MemoryBroker, Counted]:
    broker = MemoryBroker()
    planner = build_service("planner", settings, broker)
    assert isinstance(planner, Planner)
    counted = Counted(planner.proposals.docs.raw)
    planner.proposals.docs.raw = counted  # type: ignore[assignment]
    return planner, broker, counted


async def test_a_refusal_is_one_insert_then_the_outbox_pull(settings: Settings) -> None:
    planner, broker, counted = await a_planner(settings)
    await planner.on_task_proposed(too_long("j"))
    assert counted.calls == ["insert_one", "update_one"]  # the proposal with its answer; the $pull
    no, aborted = broker.published
    assert isinstance(no, OfferMade) and not no.accepted and "7200" in " ".join(no.reasons)
    assert isinstance(aborted, JobStateChanged) and aborted.state is JobState.ABORTED and aborted.seq == 1
    doc = await planner.proposals.docs.get("j")
    assert isinstance(doc, Proposal)
    assert (doc.state, doc.version, doc.reasons, doc.outbox) == ("NO", 1, no.reasons, [])


async def test_a_redelivered_refusal_changes_and_publishes_nothing(settings: Settings) -> None:
    planner, broker, counted = await a_planner(settings)
    ev = too_long("j")
    await planner.on_task_proposed(ev)
    broker.published.clear()
    counted.calls.clear()
    await planner.on_task_proposed(ev)
    assert broker.published == []
    assert counted.calls == ["insert_one", "find_one"]  # refused by the key, then read as it is


async def test_a_proposal_stored_new_before_is_still_answered(settings: Settings) -> None:
    """A planner that stored it NEW and stopped before answering: the next delivery answers it."""
    planner, broker, _ = await a_planner(settings)
    ev = too_long("j")
    assert await planner.proposals.open(ev) is not None
    await planner.on_task_proposed(ev)
    assert [type(e).__name__ for e in broker.published] == ["OfferMade", "JobStateChanged"]
    doc = await planner.proposals.docs.get("j")
    assert doc is not None and (doc.state, doc.version) == ("NO", 1)
