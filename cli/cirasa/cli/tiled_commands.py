"""``cirasa tiled``: a large map found as overlapping tiles, each a job, and one merged catalogue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import EXIT_FAILED, notice
from cirasa.cli.follow import server_flag, stop_waiting
from cirasa.cli.params import DEFAULT_SERVER, AppName, AppOptions, Server, parse_options
from cirasa.cli.submission import FileOption, ImageArg, input_file

console = Console(stderr=True)
ENDED = ("SUCCESS", "FAILURE")


def tiled(
    image: ImageArg = None,
    app_name: AppName = "sep",
    option: AppOptions = None,
    file: FileOption = None,
    per_side: Annotated[int, typer.Option(min=1, max=16, help="tiles per side: PER_SIDE² jobs")] = 2,
    overlap: Annotated[int, typer.Option(min=0, help="pixels each tile reaches into its neighbours")] = 64,
    out: Annotated[Path | None, typer.Option(help="write the merged catalogue (JSON) here")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the tiles to the end")] = True,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Find sources in a large IMAGE (or --file) as PER_SIDE x PER_SIDE overlapping tiles, each a job
    the platform places where it has room; the tiles' catalogues are merged without duplicates.

    Prints the request (JSON) on stdout; with --wait, follows the tiles to the merged catalogue."""
    options = parse_options(option or [])
    with CaesarClient(server) as client:
        body = {
            "data_inputs": input_file(client, image, file),
            "app": app_name,
            "job_inputs": options,
            "per_side": per_side,
            "overlap_px": overlap,
        }
        request = client.tiled_submit(body)
        print(json.dumps({k: request[k] for k in ("id", "state", "total", "per_side", "overlap_px")}))
        if not wait:
            notice(f"tiled request {request['id']} accepted: {request['total']} tile jobs")
            return
        final = follow_tiles(client, request["id"])
        if final["state"] != "SUCCESS":
            failed = [t for t in final["tiles"] if t["state"] != "SUCCESS"]
            lines = "; ".join(f"tile {t['index']} {t['state']}: {t['status']}" for t in failed[:4])
            notice(f"tiled request {final['id']} failed: {lines}")
            raise typer.Exit(EXIT_FAILED)
        catalogue = client.tiled_catalogue(request["id"])
    if out is not None:
        out.write_text(json.dumps(catalogue, indent=1))
    where = f", written to {out}" if out else ""
    console.print(f"merged catalogue: {len(catalogue['sources'])} sources from {final['total']} tiles{where}")


def follow_tiles(client: CaesarClient, request_id: str, interval_s: float = 0.5) -> dict[str, Any]:
    """The request once every tile has ended; a line each time the count of finished tiles moves."""
    started, shown = time.monotonic(), None
    try:
        while True:
            state = client.tiled(request_id)
            line = (state["state"], state["done"])
            if line != shown:
                elapsed = time.monotonic() - started
                console.print(
                    f"   {elapsed:6.1f} s  {state['state']:<9} {state['done']}/{state['total']} tiles done"
                )
                shown = line
            if state["state"] in ENDED:
                return state
            time.sleep(interval_s)
    except KeyboardInterrupt:
        stop_waiting("the tiles' jobs continue", f"`cirasa jobs{server_flag(client.server)}` lists them")
