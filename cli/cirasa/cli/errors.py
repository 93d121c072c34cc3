"""What goes wrong in a client command, as one line on stderr and an exit code, never a traceback.

Exit codes: 1 the job (or session) ended but did not succeed; 2 a bad argument, option or id, or a
request the server refused (4xx); 3 the server cannot be reached, timed out or failed (5xx);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import re

import httpx
import typer

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_INTERRUPTED = 130

START_HINT = "start it with `cirasa dev` or pass --server"
_MAX_MESSAGE = 400


class CliError(Exception):
    """An error the user can act on; ``str()`` is the whole message."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ServerUnreachable(CliError):
    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach the CIRASA server at {server}: {reason} — {START_HINT}", EXIT_SERVER)


class ApiError(CliError):
    """A reply the command cannot use, with the server's own message (whichever face sent it)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        message = server_message(response)
        if response.status_code >= 400:
            message = f"HTTP {response.status_code}: {message}"
        super().__init__(message, EXIT_SERVER if response.status_code >= 500 else EXIT_USAGE)


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (newlines too) as single spaces, cut to a readable length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def server_message(response: httpx.Response) -> str:
    """The message in an error reply, whichever face sent it: caesar-rest's JSON ``status``, the
    ExecutionBroker's ``message`` (its ``status`` is the number), RFC 6750's ``error_description``,
    FastAPI's ``detail``, or UWS's plain text. The response must have been read."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("status", "message", "error_description", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return one_line(value)
    text = response.text.strip()
    if text and "html" not in response.headers.get("content-type", ""):
        return one_line(text)
    return response.reason_phrase or f"HTTP {response.status_code}"


def transport_error(server: str, exc: httpx.TransportError) -> CliError:
    """A failed exchange with the server as the user should read it."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnreachable(server, _reason(exc))
    if isinstance(exc, httpx.TimeoutException):
        return CliError(f"the CIRASA server at {server} did not answer in time ({_reason(exc)})", EXIT_SERVER)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return CliError(f"--server {server!r} is not a URL like http://127.0.0.1:8000")
    return CliError(f"the connection to the CIRASA server at {server} failed: {_reason(exc)}", EXIT_SERVER)


def _reason(exc: Exception) -> str:
    """``[Errno 111] Connection refused`` → ``connection refused``."""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()) or type(exc).__name__
    return text[0].lower() + text[1:]


def report(message: str, prefix: str = "error") -> None:
    """One line on stderr: ``error: ...`` (or ``warning: ...``)."""
    color = "red" if prefix == "error" else "yellow"
    typer.echo(f"{typer.style(prefix + ':', fg=color, bold=True)} {one_line(message)}", err=True)


def notice(message: str) -> None:
    """One plain line on stderr (what the user should know, not an error)."""
    typer.echo(one_line(message), err=True)
