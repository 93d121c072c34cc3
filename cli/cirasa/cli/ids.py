"""Job and file ids from what the user typed: a whole id or any unique prefix of one."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cirasa.cli.errors import CliError

FULL_ID = re.compile(r"^[0-9a-f]{32}$")
_SHOWN = 5


def clean(typed: str) -> str:
    """What was typed, less the blanks and the ellipsis of a cut id copied from a table."""
    return typed.strip().rstrip(".…").strip().lower()


def is_full_id(typed: str) -> bool:
    return bool(FULL_ID.match(clean(typed)))


def resolve(typed: str, known: Iterable[str], kind: str = "job", listing: str = "cirasa jobs") -> str:
    """The one id in ``known`` that is ``typed`` or starts with it; else a one-line error that says
    why (no match, or the candidates when several match)."""
    prefix = clean(typed)
    if not prefix:
        raise CliError(f"give a {kind} id (or the start of one): `{listing}` lists them")
    ids = list(dict.fromkeys(known))
    if prefix in ids:
        return prefix
    matches = [i for i in ids if i.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CliError(f"no {kind} id starts with {typed.strip()!r} (of {len(ids)}): `{listing}` lists them")
    more = len(matches) - _SHOWN
    shown = ", ".join(matches[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
    raise CliError(
        f"{kind} id {typed.strip()!r} is ambiguous: {len(matches)} {kind}s match ({shown}); type more of it"
    )
