"""``cirasa sim``: run seeded schedules and report faults injected and invariants violated."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer


def _kinds(spec: str) -> frozenset[str]:
    from cirasa.cli.sim.faults import KINDS

    if spec == "all":
        return frozenset(KINDS)
    if spec == "none":
        return frozenset()
    kinds = frozenset(k.strip() for k in spec.split(",") if k.strip())
    unknown = kinds - set(KINDS)
    if unknown:
        raise typer.BadParameter(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    return kinds


Seeds = Annotated[int | None, typer.Option("--seeds", "-n", help="how many seeds (default 100)")]
Seed = Annotated[int | None, typer.Option("--seed", help="this one seed (with --seeds: the first)")]
Faults = Annotated[str, typer.Option("--faults", help="all, none, or a comma-separated list of kinds")]
Size = Annotated[int, typer.Option("--size", help="workload operations per schedule")]
Workers = Annotated[int, typer.Option("--workers", "-j", help="processes to run seeds in")]


def sim(
    seeds: Seeds = None, seed: Seed = None, faults: Faults = "all", size: Size = 8, workers: Workers = 1
) -> None:
    """Deterministic simulation: the five services on simulated time, seeded faults, invariants checked."""
    from cirasa.cli.sim.runner import run_many

    kinds = _kinds(faults)
    first = seed if seed is not None else 0
    count = seeds if seeds is not None else (1 if seed is not None else 100)
    started = time.perf_counter()
    results = run_many(list(range(first, first + count)), kinds, size, workers)
    elapsed = time.perf_counter() - started
    injected: Counter[str] = Counter()
    for r in results:
        injected.update(r.faults)
    failing = [r for r in results if r.violations]
    simulated = sum(r.sim_seconds for r in results)
    typer.echo(f"seeds run: {len(results)} in {elapsed:.1f} s (simulated {simulated:.0f} s)")
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(injected.items()))
    typer.echo(f"faults injected: {by_kind or 'none'}")
    typer.echo(f"violations: {sum(len(r.violations) for r in failing)} in {len(failing)} seeds")
    for r in failing:
        typer.echo(f"seed {r.seed} faults {dict(sorted(r.faults.items()))}; replay: {r.replay}")
        for line in r.violations:
            typer.echo(f"    {line}")
    if failing:
        raise typer.Exit(1)
