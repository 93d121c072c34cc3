"""``cirasa jobs``, ``files``, ``status`` and ``cancel``: your jobs and uploads, whole ids shown,
any unique prefix of an id accepted."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from cirasa.cli.client import TERMINAL, CaesarClient
from cirasa.cli.errors import EXIT_FAILED, notice
from cirasa.cli.follow import follow, progress
from cirasa.cli.params import DEFAULT_SERVER, Server
from cirasa.cli.tables import cell, render

JobArg = Annotated[str, typer.Argument(metavar="JOB", help="job id, or any unique start of one")]


def human_seconds(value: Any) -> str:
    """``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``-`` when not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(value: Any) -> str:
    """A stored date to the second (``2025-01-31T10:00:00``)."""
    text = cell(value)
    return text[:19] if len(text) > 19 and text[10:11] == "T" else text


def jobs(server: Server = DEFAULT_SERVER) -> None:
    """List your jobs, oldest first, with their whole ids."""
    with CaesarClient(server) as client:
        listed = client.jobs()
    if not listed:
        notice("no jobs yet: `cirasa submit IMAGE` runs one")
        return
    headers = ("job_id", "app", "state", "elapsed", "submitted", "status")
    rows = [
        (j["job_id"], cell(j.get("app")), cell(j.get("state")), human_seconds(j.get("elapsed_time")),
         when(j.get("submit_date")), cell(j.get("status")))
        for j in listed
    ]  # fmt: skip
    print(render(headers, rows))


def files(server: Server = DEFAULT_SERVER) -> None:
    """List your uploaded files, with their whole ids (give one to `submit --file`)."""
    with CaesarClient(server) as client:
        listed = client.files()
    if not listed:
        notice("no files yet: `cirasa submit IMAGE` uploads one")
        return
    headers = ("file_id", "size_MiB", "uploaded", "tag", "name")
    rows = [
        (f["fileid"], cell(f.get("filesize"), 3), when(f.get("filedate")), cell(f.get("tag")),
         cell(f.get("filename_orig")))
        for f in listed
    ]  # fmt: skip
    print(render(headers, rows))


def status_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``status`` shows of a job, as (label, value); the platform only once it has one."""
    lines = [
        ("job", cell(record.get("job_id"))),
        ("app", cell(record.get("app"))),
        ("state", cell(record.get("state"))),
        ("status", cell(record.get("status"))),
        ("elapsed", human_seconds(record.get("elapsed_time"))),
    ]
    if record.get("platform"):
        lines.append(("platform", cell(record["platform"])))
    if record.get("state") in TERMINAL and record.get("exit_code") not in (None, -1, ""):
        lines.append(("exit code", cell(record["exit_code"])))
    lines.append(("submitted", when(record.get("submit_date"))))
    return lines


def status(
    job: JobArg,
    follow_it: Annotated[
        bool, typer.Option("--follow", "-f", help="follow the job to its end (Ctrl-C stops following)")
    ] = False,
    server: Server = DEFAULT_SERVER,
) -> None:
    """A job's state, status line, elapsed time and platform."""
    with CaesarClient(server) as client:
        job_id = client.job_id(job)
        if follow_it:
            follow(client, job_id, progress(Console(stderr=True)))
        merged = client.job_record(job_id)
    width = max(len(label) for label, _ in status_lines(merged))
    for label, value in status_lines(merged):
        print(f"{label:<{width}}  {value}")
    if follow_it and merged["state"] != "SUCCESS":
        raise typer.Exit(EXIT_FAILED)


def cancel(job: JobArg, server: Server = DEFAULT_SERVER) -> None:
    """Cancel a job (POST .../job/JOB/cancel) and print what the server says."""
    with CaesarClient(server) as client:
        job_id = client.job_id(job)
        reply = client.cancel(job_id)
    print(f"job {job_id}: {cell(reply.get('status'))}")
