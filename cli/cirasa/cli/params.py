"""Options the client commands share, checked by click so a bad value is named before any request:
``Invalid value for '--cores': 'two' is not a valid integer``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import typer

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _check_server(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value or ""):
        raise typer.BadParameter(f"{value!r} is not a URL like {DEFAULT_SERVER}")
    return value.rstrip("/")


Server = Annotated[
    str,
    typer.Option("--server", "-s", envvar="CIRASA_SERVER", help="gateway base URL", callback=_check_server),
]


@dataclass(frozen=True)
class CoreRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def parse_cores(value: str | CoreRange) -> CoreRange:
    """``MIN`` or ``MIN-MAX`` cores, whole numbers from 1."""
    if isinstance(value, CoreRange):
        return value
    low, sep, high = str(value).partition("-")
    numbers: list[int] = []
    for part in (low, high) if sep else (low,):
        try:
            numbers.append(int(part.strip()))
        except ValueError:
            raise typer.BadParameter(
                f"{part.strip()!r} is not a valid integer (give MIN or MIN-MAX, e.g. 2 or 1-4)"
            ) from None
    if min(numbers) < 1:
        raise typer.BadParameter(f"{value!r}: cores start at 1")
    if numbers[-1] < numbers[0]:
        raise typer.BadParameter(f"{value!r}: MAX is below MIN")
    return CoreRange(numbers[0], numbers[-1])


_ISO = re.compile(
    r"^P(?!$)(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_SHORT = re.compile(r"^(?!$)(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?:in)?)?(?:(?P<s>\d+)s)?$")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def iso_duration(seconds: float) -> str:
    """Whole seconds as ISO-8601: 5400 → ``PT1H30M``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{secs}S" if secs or text == "PT" else "")


def parse_duration(value: str) -> str:
    """An ISO-8601 duration (``PT30M``, ``P1DT2H``) as given, or the shorthand ``30m``, ``2h``,
    ``1h30m``, ``90s`` made ISO-8601, which is what the server reads."""
    text = str(value).strip()
    iso = _ISO.match(text.upper())
    match = iso or _SHORT.match(text.lower())
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not an ISO-8601 duration such as PT30M (or a shorthand such as 30m, 2h, 1h30m)"
        )
    seconds = sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v)
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r}: the duration must be positive")
    return text.upper() if iso else iso_duration(seconds)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (``5`` → int, ``true`` → bool)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value (e.g. -o seedthr=5)")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def _app_options(value: list[str] | None) -> list[str]:
    parse_options(value or [])
    return value or []


AppOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="an app option, repeatable (`cirasa apps APP` lists them)",
        callback=_app_options,
    ),
]
AppName = Annotated[
    str, typer.Option("--app", "-a", help="the app (finder) to run: `cirasa apps` lists them")
]
