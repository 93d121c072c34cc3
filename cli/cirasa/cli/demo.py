"""The steps of ``cirasa demo``: serve the platform in memory, simulate a map, run a finder on it, show
what it found.

Where the time goes (2 CPUs): importing the five services (~2 s) and the finder's own process (~3 s:
astropy and sep, then the preview PNG through matplotlib) dominate. The demo follows the job every
0.1 s, and ends its process at once when done instead of tearing down the in-memory platform (most of
a second of interpreter clean-up).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cirasa.cli.client import CaesarClient
from cirasa.cli.submission import submit_and_follow
from cirasa.common.settings import Settings

POLL_S = 0.1  # how often the demo asks for its job's status (and the monitor its backend)
SHOWN = 15  # catalogue rows printed; the rest are in the catalogue files
COLUMNS = ("source_id", "ra_deg", "dec_deg", "peak_flux_jy", "snr")

console = Console(stderr=True)


def serve_in_memory(settings: Settings) -> None:
    """The five services in this process (in a thread: the services are imported there, meanwhile)."""
    from cirasa.cli.runtime import SERVICES, run

    run(list(SERVICES), settings, True)


def simulate(image: Path, size: int, sources: int) -> int:
    """Write the map; returns how many sources were injected."""
    from cirasa.finders.imaging import synthetic_image

    truth = synthetic_image(image, size=size, n_sources=sources, seed=1)
    console.print(
        f"[bold]1.[/] simulated {image.name}: {size}x{size} px, {len(truth)} point sources, "
        '15" beam, 20 µJy/beam noise'
    )
    return len(truth)


def run_job(client: CaesarClient, image: Path, app_name: str) -> dict[str, Any]:
    """Upload the map, submit the finder and follow its job to its end."""
    options = {"seedthr": 5.0} if app_name == "sep" else {}
    return submit_and_follow(client, console, image, app_name, options, interval_s=POLL_S)


def cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def catalogue_table(rows: list[dict[str, Any]], app_name: str, injected: int) -> Table:
    """The brightest sources (by SNR) as a table whose caption says how many of them it shows."""
    brightest = sorted(rows, key=lambda r: -(r.get("snr") or 0.0))[:SHOWN]
    table = Table(title=f"{len(rows)} sources found by {app_name} ({injected} injected)")
    if len(brightest) < len(rows):
        table.caption = f"showing {len(brightest)} of {len(rows)} sources, highest SNR first"
    for column in COLUMNS:
        table.add_column(column)
    for row in brightest:
        table.add_row(*(cell(row.get(c)) for c in COLUMNS))
    return table


def report(client: CaesarClient, status: dict[str, Any], app_name: str, injected: int, work: Path) -> None:
    """The catalogue as a table on stdout, then where the products and the job's archive are."""
    job_id = status["job_id"]
    catalog = client.sources(job_id)
    Console().print(catalogue_table(catalog.get("sources", []), app_name, injected))
    job_dir = work / "jobs" / "anonymous" / f"job_{job_id}"
    files = sorted(p.name for p in job_dir.glob("catalog-*"))
    archive = client.fetch(job_id, work / f"job_{job_id}.tar.gz")
    console.print(
        f"[bold]4.[/] products: {job_dir}\n   catalogue: {', '.join(files) or '-'}\n   archive: {archive}"
    )


def exit_now(code: int = 0) -> None:
    """End the process at once: the in-memory platform needs no clean-up, and the interpreter's would
    cost most of a second. What was printed is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
