"""The deterministic simulation (cirasa.cli.sim): 300 seeded schedules of the five services under
faults, each invariant of DESIGN.md section 4 checked after every schedule.

A failing seed is listed with the one command that replays it (``cirasa sim --seed S``).
Invariants the services do not meet yet are marked known-failing with the reason found; they stay
checked (an XPASS says the fix landed and the mark can go).
"""

from __future__ import annotations

import pytest

from cirasa.cli.sim.faults import KINDS
from cirasa.cli.sim.invariants import INVARIANTS
from cirasa.cli.sim.runner import Result, run_many, run_seed

SEEDS = list(range(300))

# invariants the services do not meet yet, with the reason found: none today
KNOWN_FAILING: dict[str, str] = {}


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return run_many(SEEDS, workers=2)


def _marked(invariant: str) -> object:
    reason = KNOWN_FAILING.get(invariant)
    return (
        pytest.param(invariant, marks=pytest.mark.xfail(reason=reason, strict=False)) if reason else invariant
    )


@pytest.mark.parametrize("invariant", [_marked(i) for i in INVARIANTS])
def test_invariant_holds_on_every_seed(results: list[Result], invariant: str) -> None:
    found = [f"{r.replay}  # {v}" for r in results for v in r.violations if v.startswith(f"{invariant}:")]
    assert not found, f"{len(found)} violations:\n" + "\n".join(found[:20])


def test_the_harness_itself_never_fails(results: list[Result]) -> None:
    broken = [f"{r.replay}  # {v}" for r in results for v in r.violations if v.startswith("harness:")]
    assert not broken, "\n".join(broken)


def test_every_fault_kind_is_injected(results: list[Result]) -> None:
    injected = {kind for r in results for kind, n in r.faults.items() if n}
    assert injected == set(KINDS)


def test_a_seed_replays_exactly() -> None:
    first, again = run_seed(13), run_seed(13)
    assert first.trace == again.trace
    assert first.violations == again.violations and first.faults == again.faults


def test_without_faults_nothing_is_injected() -> None:
    result = run_seed(5, kinds=frozenset())
    assert not result.faults
    assert not [v for v in result.violations if not v.startswith(tuple(KNOWN_FAILING))]
