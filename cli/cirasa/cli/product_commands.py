"""``cirasa sources``, ``logs`` and ``fetch``: what a job made, read from the server."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import notice
from cirasa.cli.job_commands import JobArg
from cirasa.cli.params import DEFAULT_SERVER, Server
from cirasa.cli.tables import cell, fixed, render

# (header, catalogue key, decimals, scale): positions to ~0.004", fluxes in mJy
SOURCE_COLUMNS: tuple[tuple[str, str, int, float], ...] = (
    ("ra_deg", "ra_deg", 6, 1.0),
    ("dec_deg", "dec_deg", 6, 1.0),
    ("x_pix", "x_pix", 1, 1.0),
    ("y_pix", "y_pix", 1, 1.0),
    ("peak_mJy", "peak_flux_jy", 3, 1e3),
    ("int_mJy", "int_flux_jy", 3, 1e3),
    ("snr", "snr", 1, 1.0),
    ("maj_arcsec", "maj_arcsec", 1, 1.0),
    ("min_arcsec", "min_arcsec", 1, 1.0),
    ("pa_deg", "pa_deg", 1, 1.0),
)


def source_table(rows: list[dict[str, Any]]) -> str:
    """The catalogue rows as an aligned table of the readable columns any row has."""
    columns = [c for c in SOURCE_COLUMNS if any(r.get(c[1]) is not None for r in rows)]
    headers = ["source_id", *(c[0] for c in columns)]
    body = [
        [cell(r.get("source_id")), *(fixed(r.get(key), digits, scale) for _, key, digits, scale in columns)]
        for r in rows
    ]
    return render(headers, body)


def sources(
    job: JobArg,
    limit: Annotated[int, typer.Option(min=0, help="rows to show; 0 shows them all")] = 50,
    server: Server = DEFAULT_SERVER,
) -> None:
    """The catalogue a finished job found, as a table (fluxes in mJy, sizes FWHM)."""
    with CaesarClient(server) as client:
        job_id = client.job_id(job)
        catalogue = client.sources(job_id)
    rows = catalogue.get("sources") or []
    if not rows:
        notice(f"job {job_id} found no sources")
        return
    shown = rows if limit == 0 else rows[:limit]
    print(source_table(shown))
    more = "" if len(shown) == len(rows) else " (--limit 0 shows all)"
    notice(f"{len(shown)} of {len(rows)} sources shown{more}")


class Stream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


def logs(
    job: JobArg,
    stream: Annotated[Stream, typer.Option(help="which output of the job")] = Stream.stderr,
    tail: Annotated[int, typer.Option(min=1, help="how many of the last lines")] = 200,
    server: Server = DEFAULT_SERVER,
) -> None:
    """The last lines a job wrote on its stdout or stderr."""
    with CaesarClient(server) as client:
        job_id = client.job_id(job)
        text = client.log(job_id, stream.value, tail)
    if not text:
        notice(f"job {job_id} has written nothing on {stream.value} (yet)")
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def fetch(
    job: JobArg,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="where [default: job_<id>.tar.gz]")] = None,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Download a finished job's directory as job_<id>.tar.gz."""
    with CaesarClient(server) as client:
        job_id = client.job_id(job)
        path = client.fetch(job_id, out or Path(f"job_{job_id}.tar.gz"))
    notice(f"saved {path}")
