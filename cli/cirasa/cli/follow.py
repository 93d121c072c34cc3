"""Following a job to its end, and what Ctrl-C means meanwhile: we stop waiting, the job does not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console

from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import EXIT_INTERRUPTED, notice
from cirasa.cli.params import DEFAULT_SERVER

Status = dict[str, Any]


def server_flag(server: str) -> str:
    """`` --server URL`` when ``server`` is not the default, so a suggested command runs as printed."""
    return "" if server.rstrip("/") == DEFAULT_SERVER else f" --server {server}"


def stop_waiting(goes_on: str, then: str) -> NoReturn:
    """Ctrl-C while waiting: one line saying what ``goes_on`` on the server and what to run ``then``;
    exit 130 (what was interrupted is our waiting, not the work)."""
    notice(f"stopped waiting; {goes_on} on the server — {then}")
    raise typer.Exit(EXIT_INTERRUPTED) from None


def progress(console: Console) -> Callable[[Status], None]:
    """A printer of each new state and status line, with the seconds since it was made."""
    started = time.monotonic()

    def show(status: Status) -> None:
        elapsed = time.monotonic() - started
        line = f"   {elapsed:6.1f} s  {status['state']:<9} {status.get('status', '')}"
        console.print(line, markup=False, highlight=False)

    return show


def follow(
    client: CaesarClient, job_id: str, show: Callable[[Status], None], interval_s: float = 0.5
) -> Status:
    """The job's final status; on Ctrl-C, one line saying the job goes on, and exit 130."""
    try:
        return client.wait(job_id, show, interval_s=interval_s)
    except KeyboardInterrupt:
        flag = server_flag(client.server)
        stop_waiting(
            f"job {job_id} continues",
            f"`cirasa status {job_id}{flag}` to follow, `cirasa cancel {job_id}{flag}` to cancel it",
        )
