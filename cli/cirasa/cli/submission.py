"""What ``submit`` and ``offers`` share: the input (a FITS file to upload, or one uploaded before) and
a job submission that warns of the options the server ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cirasa.cli.app_commands import warn_ignored
from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import CliError
from cirasa.cli.follow import follow, progress

ImageArg = Annotated[
    Path | None,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, metavar="IMAGE", help="the map to upload (FITS)"
    ),
]
FileOption = Annotated[
    str | None,
    typer.Option(
        "--file", "-f", metavar="FILE_ID", help="an uploaded file instead of IMAGE: id or unique start of one"
    ),
]


def check_input(image: Path | None, file: str | None) -> None:
    if (image is None) == (file is None):
        raise CliError("give either IMAGE (a FITS file to upload) or --file FILE_ID (one uploaded before)")


def input_file(client: CaesarClient, image: Path | None, file: str | None) -> str:
    """The id of the job's input: IMAGE uploaded now, or the uploaded file ``--file`` names."""
    check_input(image, file)
    if file is not None:
        return client.file_id(file)
    assert image is not None
    return str(client.upload(image)["uuid"])


def submit_and_follow(
    client: CaesarClient,
    console: Console,
    image: Path | None,
    app_name: str,
    options: dict[str, Any],
    file: str | None = None,
    interval_s: float = 0.5,
) -> dict[str, Any]:
    """Upload ``image`` (or take the uploaded ``file``), submit, and follow the job to its end,
    telling each step on ``console``."""
    if file is None and image is not None:
        up = client.upload(image)
        file_id = up["uuid"]
        console.print(f"[bold]2.[/] uploaded {image.name} as file {up['uuid']} ({up['size']:.2f} MiB)")
    else:
        file_id = input_file(client, image, file)
        console.print(f"[bold]2.[/] input: uploaded file {file_id}")
    job = submit_job(client, app_name, file_id, options)
    console.print(f"[bold]3.[/] job {job['job_id']} accepted (202), app {app_name}")
    return follow(client, job["job_id"], progress(console), interval_s)


def submit_job(client: CaesarClient, app: str, file_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The server's 202 reply; a warning line first when it ignored some of ``options``."""
    reply = client.submit(app, file_id, options)
    warn_ignored(client, app, reply)
    return reply
