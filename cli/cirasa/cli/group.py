"""The ``cirasa`` command group: every error a command raises ends as one line on stderr and an exit
code. ``CIRASA_DEBUG=1`` lets an unexpected error through with its traceback."""

from __future__ import annotations

import errno
import os
from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from cirasa.cli.errors import EXIT_FAILED, EXIT_SERVER, EXIT_USAGE, CliError, one_line, report


def usage_message(exc: typer.TyperException) -> str:
    """click's usage error (a bad option value, a missing argument) as one line, with where to look."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return one_line(exc.format_message()) + hint


class CliGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:  # click's usage errors, as Typer vendors them
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            report(usage_message(exc))
            code = getattr(exc, "exit_code", EXIT_USAGE)
            raise typer.Exit(code) from None
        except CliError as exc:
            report(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if os.environ.get("CIRASA_DEBUG") or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise
            report(unexpected(exc))
            raise typer.Exit(EXIT_SERVER if isinstance(exc, httpx.HTTPError) else EXIT_FAILED) from None


def unexpected(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return f"{type(exc).__name__}: {exc} (CIRASA_DEBUG=1 shows the traceback)"
