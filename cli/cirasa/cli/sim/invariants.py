"""What must hold once the system has settled, whatever the faults were (DESIGN.md section 4).

Each check returns the violations it found, one line each, naming the invariant first.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from cirasa.cli.sim.backend import Run
from cirasa.common.events import TERMINAL_STATES, JobStateChanged, JobSubmitted, TaskProposed
from cirasa.planner.calendar import Booking
from cirasa.planner.ledger import stored_bookings

if TYPE_CHECKING:
    from cirasa.cli.sim.runner import World

OUTBOXES = {
    "gateway": ("files", "jobs", "offersets", "sessions"),
    "planner": ("proposals",),
    "scheduler": ("dispatches",),
    "monitor": ("jobs",),
    "accounting": ("usage",),
}
INVARIANTS = (
    "one_terminal_state",
    "no_double_start",
    "no_overbooking",
    "bookings_released",
    "seq_rises",
    "accounting_matches",
    "outbox_empty",
    "nothing_unacked",
)


async def _docs(world: World, service: str, name: str, query: dict[str, Any] | None = None) -> list[Any]:
    """Documents as stored (read past the fault wrappers)."""
    return [d async for d in world.raw_db(service)[name].find(query or {})]


async def settled(world: World) -> bool:
    """Every job the gateway knows is final, every message handled, every outbox and booking gone."""
    if world.broker.pending() or world.down:
        return False
    if await _docs(world, "gateway", "jobs", {"state": {"$nin": list(TERMINAL_STATES)}}):
        return False
    for service, collections in OUTBOXES.items():
        for name in collections:
            if await _docs(world, service, name, {"outbox.0": {"$exists": True}}):
                return False
    return not await _bookings(world)


async def _bookings(world: World) -> list[tuple[str, Booking]]:
    """What the planner's store holds booked, read as a planner starting afresh would read it."""
    db = world.raw_db("planner")
    return [(p.name, b) for p in world.settings.platforms for b in await stored_bookings(db, p.name)]


def _published(world: World) -> tuple[dict[str, set[str]], set[str]]:
    """Terminal states announced per job (distinct events), and every job id that was accepted."""
    terminal: dict[str, set[str]] = defaultdict(set)
    accepted: set[str] = set()
    for ev in world.broker.published:
        if isinstance(ev, JobStateChanged) and ev.state.is_terminal:
            terminal[ev.job_id].add(ev.state.value)
        elif isinstance(ev, JobSubmitted):
            accepted.add(ev.job_id)
        elif isinstance(ev, TaskProposed) and ev.auto_accept:
            accepted.add(ev.correlation_id)
    return terminal, accepted


async def check(world: World) -> list[str]:
    out: list[str] = []
    out += await one_terminal_state(world)
    out += no_double_start(world)
    out += no_overbooking(world)
    out += await bookings_released(world)
    out += seq_rises(world)
    out += await accounting_matches(world)
    out += await outbox_empty(world)
    out += nothing_unacked(world)
    return out


async def one_terminal_state(world: World) -> list[str]:
    """Every accepted job ends in exactly one terminal state, and gateway, monitor and events agree."""
    out: list[str] = []
    terminal, accepted = _published(world)
    gateway = {d["_id"]: d for d in await _docs(world, "gateway", "jobs")}
    monitor = {d["_id"]: d for d in await _docs(world, "monitor", "jobs")}
    sessions = {d["job_id"]: d for d in await _docs(world, "gateway", "sessions") if d.get("job_id")}
    for job_id in sorted(set(world.workload.client.jobs) - set(gateway) - accepted):
        out.append(f"one_terminal_state: job {job_id} was given to a client but was never recorded")
    for job_id in sorted(accepted | set(gateway)):
        states = terminal.get(job_id, set())
        if len(states) != 1:
            out.append(f"one_terminal_state: job {job_id} announced terminal states {sorted(states)}")
            continue
        (final,) = states
        views = {"monitor": monitor.get(job_id, {}).get("state")}
        if job_id in sessions:
            views["session"] = sessions[job_id].get("job_state")
        if job_id in gateway:
            views["gateway"] = gateway[job_id].get("state") or "nothing"
        for who, state in views.items():
            if state is not None and state != final:
                out.append(f"one_terminal_state: job {job_id} is {state} in the {who}, events say {final}")
    return out


def no_double_start(world: World) -> list[str]:
    return [
        f"no_double_start: job {job_id} started {len(runs)} times on the backend"
        for job_id, runs in sorted(world.backends.runs.items())
        if len(runs) > 1
    ]


def no_overbooking(world: World) -> list[str]:
    """At no instant do the jobs running on a platform use more cores than it has."""
    out: list[str] = []
    cores = {p.name: p.cores for p in world.settings.platforms}
    by_platform: dict[str, list[Run]] = defaultdict(list)
    for runs in world.backends.runs.values():
        for run in runs:
            by_platform[run.platform].append(run)
    for platform, runs in sorted(by_platform.items()):
        steps = sorted([(r.start, r.cores) for r in runs] + [(r.end(), -r.cores) for r in runs])
        used = 0
        for when, delta in steps:  # ends sort before starts at the same instant
            used += delta
            if used > cores[platform]:
                out.append(
                    f"no_overbooking: {platform} runs {used} cores > {cores[platform]} at t={when:.3f}s"
                )
                break
    return out


async def bookings_released(world: World) -> list[str]:
    out: list[str] = []
    for platform, b in await _bookings(world):
        out.append(
            f"bookings_released: {platform} still holds a {b.kind} booking of "
            f"{b.cores} cores for {b.job_id or b.holder}"
        )
    return out


def seq_rises(world: World) -> list[str]:
    out: list[str] = []
    for (service, collection, job_id), seqs in sorted(world.store.seq_history.items()):
        if any(b < a for a, b in itertools.pairwise(seqs)):
            out.append(f"seq_rises: {service}.{collection} stored seq {seqs} for job {job_id}")
    return out


async def accounting_matches(world: World) -> list[str]:
    """Accounting's jobs are the accepted jobs, in their final state, with the time they really ran."""
    out: list[str] = []
    terminal, accepted = _published(world)
    accounted = {d["_id"]: d for d in await _docs(world, "accounting", "jobs")}
    for job_id in sorted(accepted | set(accounted)):
        doc = accounted.get(job_id)
        states = terminal.get(job_id, set())
        if doc is None:
            out.append(f"accounting_matches: accepted job {job_id} is not accounted")
            continue
        if len(states) == 1 and doc.get("state") not in states:
            out.append(f"accounting_matches: job {job_id} is {doc.get('state')} in accounting, not {states}")
        out += _against_backend(world, job_id, doc)
    return out


def _against_backend(world: World, job_id: str, doc: dict[str, Any]) -> list[str]:
    runs = world.backends.runs.get(job_id, [])
    state = doc.get("state")
    if not runs:
        if state in ("SUCCESS", "TIMED-OUT") or doc.get("elapsed_s"):
            return [f"accounting_matches: job {job_id} never ran, yet accounting has it {state}"]
        return []
    run = runs[-1]
    final = run.state(run.end() + 1e-6).value
    if state != final:
        return [f"accounting_matches: job {job_id} ended {final} on the backend, {state} in accounting"]
    elapsed = run.end() - run.start
    if abs(float(doc.get("elapsed_s") or 0.0) - elapsed) > 0.01:
        return [
            f"accounting_matches: job {job_id} ran {elapsed:.3f}s, accounting says {doc.get('elapsed_s')}"
        ]
    return []


async def outbox_empty(world: World) -> list[str]:
    out: list[str] = []
    for service, collections in OUTBOXES.items():
        for name in collections:
            for doc in await _docs(world, service, name, {"outbox.0": {"$exists": True}}):
                out.append(f"outbox_empty: {service}.{name} {doc['_id']} holds {len(doc['outbox'])} events")
    return out


def nothing_unacked(world: World) -> list[str]:
    out = [
        f"nothing_unacked: {name} holds {q.qsize()} messages"
        for name, q in sorted(world.broker.queues.items())
        if q.qsize()
    ]
    if world.broker.delayed:
        out.append(f"nothing_unacked: {world.broker.delayed} messages still held back")
    for key, bus in sorted(world.broker.consumers.items()):
        if bus.inflight:
            out.append(f"nothing_unacked: {key.split(':')[0]} has {len(bus.inflight)} unacked deliveries")
    out += [f"nothing_unacked: dead-lettered {d.queue}: {d.error[:120]}" for d in world.broker.dead_letters]
    return out
