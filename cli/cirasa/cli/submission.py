"""What ``submit`` and ``offers`` share: the input (a FITS file to upload, or one uploaded before) and
a job submission that warns of the options the server ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cirasa.cli.app_commands import warn_ignored
from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import CliError

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


def submit_job(client: CaesarClient, app: str, file_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The server's 202 reply; a warning line first when it ignored some of ``options``."""
    reply = client.submit(app, file_id, options)
    warn_ignored(client, app, reply)
    return reply
