"""``cirasa schemas`` and ``cirasa asyncapi``: publish the event contract the code defines, refusing
a change that would break consumers of the version already published."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirasa.common.schemas import (
    ASYNCAPI,
    EVENTS_DIR,
    Schema,
    breaking_changes,
    current_schemas,
    dumps,
    published_path,
    published_schema,
)


def schema_changes(root: Path = EVENTS_DIR) -> tuple[list[str], dict[Path, Schema]]:
    """What the code changes in the published schemas: (breaking problems, files to write)."""
    problems: list[str] = []
    to_write: dict[Path, Schema] = {}
    for (version, name), schema in sorted(current_schemas().items()):
        old = published_schema(version, name, root)
        if old is not None:
            problems += [f"{name} v{version}: {p}" for p in breaking_changes(old, schema)]
        path = published_path(version, name, root)
        if old is None or dumps(old) != dumps(schema):
            to_write[path] = schema
    return problems, to_write


def schemas(
    check: Annotated[bool, typer.Option(help="only report; exit 1 when anything would change")] = False,
    out: Annotated[Path, typer.Option(help="where the published schemas live")] = EVENTS_DIR,
) -> None:
    """Write every event's JSON Schema under <out>/v<version>/<Type>.json (compatible changes only)."""
    problems, to_write = schema_changes(out)
    if problems:
        typer.echo("breaking changes to published events (give the event a new version instead):", err=True)
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    if check:
        for path in to_write:
            typer.echo(f"would update {path}")
        raise typer.Exit(1 if to_write else 0)
    for path, schema in to_write.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(schema))
        typer.echo(f"wrote {path}")


def asyncapi(out: Annotated[Path, typer.Option("--out", "-o")] = ASYNCAPI) -> None:
    """Write the AsyncAPI document of the event contract (what the gateway serves at /asyncapi)."""
    from cirasa.cli.asyncapi import asyncapi_document

    out.write_text(asyncapi_document())
    typer.echo(f"wrote {out}")
