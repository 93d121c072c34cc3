"""``cirasa apps``: the apps (source finders), whether each can run here, and their options; and the
checks ``submit`` and ``offers`` make of an app name and of the options the server ignored."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import typer

from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import CliError, notice, report
from cirasa.cli.params import DEFAULT_SERVER, Server
from cirasa.cli.tables import cell, render

RUNNABLE: dict[Any, str] = {True: "yes", False: "no"}


def did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def check_app(client: CaesarClient, name: str) -> None:
    """Fail, listing the known apps, when the server does not know ``name`` (before any upload)."""
    known = client.app_names()
    if name not in known:
        suggestion = did_you_mean(name, known)
        raise CliError(f"app {name!r} is not known{suggestion} — known apps: {', '.join(known)}")


def warn_ignored(client: CaesarClient, app: str, reply: dict[str, Any]) -> None:
    """One warning line for the options the server ignored (it runs the app with its defaults)."""
    ignored: list[str] = reply.get("ignored_options") or []
    if not ignored:
        return
    try:
        known = list(client.describe(app))
    except CliError:
        known = []
    names = ", ".join(o + did_you_mean(o, known) for o in ignored)
    report(f"option(s) ignored by the server: {names} — known options: see `cirasa apps {app}`", "warning")


def option_rows(described: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, spec in described.items():
        if spec.get("enum") and "allowed_values" in spec:
            allowed = "|".join(str(v) for v in spec["allowed_values"])
        elif spec.get("type") == "none":
            allowed = "flag"
        else:
            allowed = f"[{cell(spec.get('min'))}, {cell(spec.get('max'))}]"
        default = "-" if spec.get("type") == "none" else cell(spec.get("default"))
        rows.append((name, cell(spec.get("type")), default, allowed, cell(spec.get("description"))))
    return rows


def apps(
    app: Annotated[str | None, typer.Argument(help="an app: list its options")] = None,
    server: Server = DEFAULT_SERVER,
) -> None:
    """The apps (source finders), whether each can run on this server and why not; with APP, its options."""
    with CaesarClient(server) as client:
        if app is not None:
            check_app(client, app)
            headers = ("option", "type", "default", "allowed", "description")
            print(render(headers, option_rows(client.describe(app))))
            return
        listed = client.apps()
    rows = [(a["name"], RUNNABLE.get(a.get("runnable"), "?"), cell(a.get("description"))) for a in listed]
    print(render(("app", "runnable", "description"), rows))
    unfit = [a for a in listed if a.get("runnable") is False]
    if unfit:
        print("\nnot runnable here:")
        print("\n".join(f"  {a['name']}: {cell(a.get('reason'))}" for a in unfit))
    if any(a.get("runnable") is None for a in listed):
        notice("this server does not say which apps can run here (it has no /cirasa/api/v1/apps)")
