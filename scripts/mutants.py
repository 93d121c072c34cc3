"""The mutation check: remove each guarantee, one line at a time, and see its tests fail.

    .venv/bin/python scripts/mutants.py [--only NAME ...]

Each mutant is a one-line change that removes one delivery guarantee of README's table. It is
applied to a copy of the working tree (never to the tree itself), and the tests that claim to guard
that guarantee run against the copy: they must fail ("killed"). A mutant whose tests still pass
("survived") is a guarantee nothing checks; a mutant whose line is not found any more is reported
too, so the list follows the code. Prints one line per mutant and ``killed N/N``; exits 1 unless
every mutant was killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("cli", "libs/common", "libs/backends", "libs/finders", *(f"services/{s}" for s in (
    "gateway", "planner", "scheduler", "monitor", "accounting")))  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    line: str  # the exact text removed or changed (it must occur once)
    becomes: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "publisher confirms off",
        "libs/common/cirasa/common/bus/rabbit.py",
        "publisher_confirms=True",
        "publisher_confirms=False",
        ("tests/integration/test_guarantees.py::test_publish_returns_only_once_the_broker_has_the_event",),
    ),
    Mutant(
        "a failed delivery acked instead of requeued",
        "libs/common/cirasa/common/bus/rabbit.py",
        "await self._acks.requeue(msg.channel, tag)",
        "self._acks.finished(msg.channel, tag)",
        ("tests/integration/test_bus_failures.py",),
    ),
    Mutant(
        "no outbox flush before the 202 (the sweep would publish it a second later)",
        "services/gateway/cirasa/gateway/service.py",
        "await self.relay.flush(self.jobs.raw, job_id, queued.entries)  # if the broker is away: the sweep",
        "pass",
        ("tests/integration/test_guarantees.py::test_the_202_comes_after_the_proposal_is_published",),
    ),
    Mutant(
        "acked before the handler ran",
        "libs/common/cirasa/common/bus/rabbit.py",
        'outcome = await self.consume(sub, msg.body, msg.routing_key or "")',
        "self._acks.finished(msg.channel, tag)\n"
        '            outcome = await self.consume(sub, msg.body, msg.routing_key or "")',
        ("tests/integration/test_bus_failures.py",),
    ),
    Mutant(
        "inbox removed",
        "libs/common/cirasa/common/bus/base.py",
        "if inbox is not None and await inbox.seen(sub.queue, event.event_id):",
        "if False:",
        ("tests/integration/test_guarantees.py::test_a_duplicate_delivery_reaches_the_handler_once",),
    ),
    Mutant(
        "outbox sweep disabled",
        "libs/common/cirasa/common/service.py",
        "await self.relay.run(self.settings.outbox_sweep_s, stop)",
        "return",
        ("tests/integration/test_guarantees.py::test_the_sweep_publishes_what_a_crash_left_in_an_outbox",),
    ),
    Mutant(
        "outbox entries not claimed by their write (the sweep may publish what a request is publishing)",
        "libs/common/cirasa/common/outbox.py",
        'entries = [{**entry, "claimed_at": now} for entry in _entries(events, now)]',
        "entries = _entries(events, now)",
        ("tests/integration/test_outbox.py::test_the_sweep_leaves_what_a_live_request_is_publishing",),
    ),
    Mutant(
        "seq guard removed from accounting's jobs",
        "services/accounting/cirasa/accounting/service.py",
        '{"_id": ev.job_id, "seq": {"$lt": ev.seq}, "state": {"$nin": list(TERMINAL_STATES)}},',
        '{"_id": ev.job_id},',
        (
            "tests/integration/test_accounting.py::"
            "test_each_event_is_one_store_write_and_stale_ones_change_nothing",
        ),
    ),
    Mutant(
        "accounting forgets who was dirty when it restarts (no recount of every user)",
        "services/accounting/cirasa/accounting/service.py",
        "self._dirty |= known | {ALL_USERS} if known else set()",
        "pass",
        (
            "tests/integration/test_accounting.py::"
            "test_usage_is_published_once_per_user_and_round_and_again_after_a_restart",
        ),
    ),
    Mutant(
        "planner compare-and-swap without its version check",
        "services/planner/cirasa/planner/ledger.py",
        '{"_id": state.name, "version": base}',
        '{"_id": state.name}',
        ("tests/unit/test_capacity.py",),
    ),
    Mutant(
        "a planner commits without storing the change before its own (a crashed writer's is lost)",
        "services/planner/cirasa/planner/ledger.py",
        "await self.write(state.name, last)  # the invariant: all before ``last`` is stored",
        "pass",
        (
            "tests/unit/test_ledger.py::test_what_a_writer_committed_but_did_not_store_is_stored_by_the_next_one",
        ),
    ),
    Mutant(
        "seq guard removed from the jobs read model",
        "services/gateway/cirasa/gateway/read_model.py",
        '{"_id": ev.job_id, "seq": {"$lt": ev.seq}, "state": {"$nin": list(TERMINAL_STATES)}}',
        '{"_id": ev.job_id, "state": {"$nin": list(TERMINAL_STATES)}}',
        ("tests/integration/test_guarantees.py::test_a_stale_state_change_is_not_applied",),
    ),
    Mutant(
        "a job's quota slot given back by every delivery of its end (the read model skips the inbox)",
        "services/gateway/cirasa/gateway/read_model.py",
        "if applied and ev.state.is_terminal:",
        "if ev.state.is_terminal:",
        ("tests/integration/test_idempotent_handlers.py",),
    ),
    Mutant(
        "O_EXCL marker removed (a job may start twice)",
        "libs/backends/cirasa/backends/local.py",
        "os.O_WRONLY | os.O_CREAT | os.O_EXCL",
        "os.O_WRONLY | os.O_CREAT",
        ("tests/unit/test_local_backend.py::test_start_is_idempotent",),
    ),
    Mutant(
        "scheduler claim removed (every dispatcher may start the job)",
        "services/scheduler/cirasa/scheduler/service.py",
        'left by a crash lapses after CLAIM_TTL and the due loop takes the job up again."""',
        'left by a crash lapses after CLAIM_TTL and the due loop takes the job up again."""\n'
        "        return True",
        ("tests/unit/test_scheduler_claims.py",),
    ),
)


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def apply(tree: Path, mutant: Mutant) -> str | None:
    """Change the copy; None when done, else why not."""
    path = tree / mutant.path
    text = path.read_text()
    count = text.count(mutant.line)
    if count != 1:
        return f"its line occurs {count} times in {mutant.path}: update scripts/mutants.py"
    path.write_text(text.replace(mutant.line, mutant.becomes))
    return None


def run_tests(tree: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *(str(tree / s) for s in SOURCES)])
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--timeout", "180", *tests]
    return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=900, check=False)


def check(mutant: Mutant) -> bool:
    with tempfile.TemporaryDirectory(prefix="cirasa-mutant-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        problem = apply(tree, mutant)
        if problem:
            print(f"  NOT APPLIED  {mutant.name}: {problem}")
            return False
        started = time.monotonic()
        result = run_tests(tree, mutant.tests)
        took = time.monotonic() - started
        killed = result.returncode not in (0, 5)  # 5: no test ran, which kills nothing
        verdict = "killed  " if killed else "SURVIVED"
        print(f"  {verdict}  {mutant.name}  ({took:.0f} s: {' '.join(mutant.tests)})", flush=True)
        if not killed:
            print("\n".join(result.stdout.splitlines()[-5:]))
        return killed


def baseline(mutants: list[Mutant]) -> bool:
    """The tests pass on the copy as it is: a kill then means the mutant, not the copy, broke them."""
    with tempfile.TemporaryDirectory(prefix="cirasa-baseline-") as tmp:
        copy_tree(Path(tmp))
        tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        result = run_tests(Path(tmp), tests)
    print(f"  baseline  {'passed' if result.returncode == 0 else 'FAILED'}  ({len(tests)} test selections)")
    if result.returncode != 0:
        print("\n".join(result.stdout.splitlines()[-15:]))
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="names (or parts of names) of the mutants to check")
    parser.add_argument(
        "--baseline", action="store_true", help="first run every mutant's tests unchanged: they must pass"
    )
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.baseline and not baseline(mutants):
        return 1
    print(f"mutation check: {len(mutants)} guarantees removed one at a time")
    killed = sum(check(m) for m in mutants)
    print(f"killed {killed}/{len(mutants)}")
    return 0 if killed == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
