"""``cirasa offers``: ask every platform "can I run this, and when?" (ExecutionBroker offers), and
optionally accept one and follow its session."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cirasa.cli.app_commands import check_app
from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import EXIT_FAILED, CliError, notice, report
from cirasa.cli.follow import server_flag, stop_waiting
from cirasa.cli.params import (
    DEFAULT_SERVER,
    AppName,
    AppOptions,
    CoreRange,
    Server,
    parse_cores,
    parse_duration,
    parse_options,
)
from cirasa.cli.submission import FileOption, ImageArg, input_file
from cirasa.cli.tables import cell, render

SESSION_ENDS = {"COMPLETED", "FAILED", "CANCELLED", "ABORTED", "EXPIRED", "REJECTED"}


def offer_request(
    app: str, options: dict[str, Any], file_id: str, cores: CoreRange, duration: str
) -> dict[str, Any]:
    from cirasa.gateway.broker import kinds

    return {
        "executable": {"kind": kinds.CIRASA_APP, "app": app, "options": options, "inputs": [file_id]},
        "compute": {"kind": kinds.SIMPLE_COMPUTE, "cores": {"min": cores.low, "max": cores.high}},
        "schedule": {"requested": {"duration": duration}},
    }


def offer_table(offerset: dict[str, Any]) -> str:
    headers = ("#", "platform", "cores", "memory_GiB", "start", "duration", "expires", "cost_core_h")
    rows = [
        (str(n), cell(o["meta"].get("name")), cell(o["compute"]["cores"]["min"]),
         cell(o["compute"]["memory"]["min"]), cell(o["schedule"]["preparing"]["start"]),
         cell(o["schedule"]["available"]["duration"]), cell(o.get("expires")),
         cell((o.get("costs") or [{}])[0].get("min")))
        for n, o in enumerate(offerset["offers"], 1)
    ]  # fmt: skip
    return f"offer set {offerset['meta']['uuid']}\n" + render(headers, rows)


def follow_session(client: CaesarClient, session_id: str, interval_s: float = 0.5) -> str:
    """Print each phase of the session until it ends; its last phase. Ctrl-C stops following only."""
    phase = ""
    try:
        while phase not in SESSION_ENDS:
            current = client.session(session_id)["phase"]
            if current != phase:
                phase = current
                notice(f"   session {session_id}: {phase}")
            if phase not in SESSION_ENDS:
                time.sleep(interval_s)
    except KeyboardInterrupt:
        flag = server_flag(client.server)
        stop_waiting(f"session {session_id} continues", f"`cirasa jobs{flag}` shows its job")
    return phase


def offers(
    image: ImageArg = None,
    app_name: AppName = "sep",
    option: AppOptions = None,
    file: FileOption = None,
    cores: Annotated[
        CoreRange, typer.Option(parser=parse_cores, metavar="MIN[-MAX]", help="cores as MIN or MIN-MAX")
    ] = CoreRange(1, 1),
    duration: Annotated[
        str,
        typer.Option(
            parser=parse_duration, metavar="DURATION", help="wall time: ISO-8601 (PT30M) or 30m, 2h, 1h30m"
        ),
    ] = "PT30M",
    accept: Annotated[
        int | None, typer.Option(min=1, help="accept offer number N (from 1) and follow it")
    ] = None,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Ask every platform "can I run this, and when?" (ExecutionBroker offers); optionally accept one."""
    with CaesarClient(server) as client:
        check_app(client, app_name)
        file_id = input_file(client, image, file)
        request = offer_request(app_name, parse_options(option or []), file_id, cores, duration)
        offerset = client.offerset(request)
        if offerset["result"] != "YES":
            for m in offerset["meta"].get("messages") or [{"message": "no platform can run this"}]:
                report(f"no offer: {m['message']}")
            raise typer.Exit(EXIT_FAILED)
        print(offer_table(offerset))
        if accept is None:
            return
        count = len(offerset["offers"])
        if accept > count:
            raise CliError(f"--accept {accept}: there {'is' if count == 1 else 'are'} only {count} offer(s)")
        chosen = offerset["offers"][accept - 1]["meta"]["uuid"]
        client.decide(chosen, "ACCEPTED")
        phase = follow_session(client, chosen)
    raise typer.Exit(0 if phase == "COMPLETED" else EXIT_FAILED)
