"""Plain aligned text tables: nothing cut, nothing wrapped, fit for a pipe (unlike a rich table,
which shortens ids to fit the terminal)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
GAP = "  "


def cell(value: Any, digits: int = 6) -> str:
    """A value as a table shows it: ``-`` for nothing, floats to ``digits`` significant digits."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}g}"
    return " ".join(str(value).split())


def fixed(value: Any, decimals: int, scale: float = 1.0) -> str:
    """A number with ``decimals`` decimals after multiplying by ``scale`` (``-`` when not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value * scale:.{decimals}f}"


def is_number(text: str) -> bool:
    return text == "-" or bool(_NUMBER.match(text))


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The rows under the headers, each column as wide as its widest cell; numeric columns right
    aligned, the last column unpadded."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [bool(rows) and all(is_number(r[i]) for r in rows) for i in range(len(widths))]
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        if not numeric[-1]:
            cells[-1] = row[-1]
        lines.append(GAP.join(cells).rstrip())
    return "\n".join(lines)
