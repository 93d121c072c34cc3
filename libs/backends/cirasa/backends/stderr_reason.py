"""Why a job failed, in its own words: the last meaningful line it wrote to its stderr.

A FAILURE's status says "Process terminated with return code 2", which tells a person nothing; the job
itself usually said why just before it ended ("sep_finder: error: not a readable FITS file: sky.png").
That line is found here, skipping blank lines and the frames of a Python traceback, and capped, so
the status a user reads carries the reason. Standard library only: the local runner imports it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

STDERR_TAIL_BYTES = 64 * 1024
"""Only the end of a (possibly huge) stderr file is read."""
REASON_LIMIT = 300
"""Longest reason kept, in characters (an ellipsis marks the cut)."""

_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_MARKER = re.compile(r"^[\s^~]+$")  # the carets under a traceback's source line
_TRACEBACK_TEXT = (
    "Traceback (most recent call last):",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def _meaningful(line: str) -> bool:
    """Not blank, and not part of a traceback's frames (indented lines: frames, source lines, carets)."""
    stripped = line.strip()
    if not stripped or line[:1].isspace() or _MARKER.match(line):
        return False
    return not (_FRAME.match(line) or stripped in _TRACEBACK_TEXT)


def last_meaningful_line(text: str, limit: int = REASON_LIMIT) -> str:
    """The last line of ``text`` that says something, whitespace squeezed, at most ``limit`` characters;
    "" when there is none."""
    for line in reversed(text.splitlines()):
        if _meaningful(line):
            squeezed = " ".join(line.split())
            return squeezed if len(squeezed) <= limit else squeezed[: limit - 1].rstrip() + "…"
    return ""


def tail_text(path: Path, max_bytes: int) -> str:
    """The text of the file's last ``max_bytes`` bytes, less the first line when the read cut it;
    raises OSError when the file cannot be read."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - max_bytes))
        text = fh.read().decode("utf-8", errors="replace")
    return text.partition("\n")[2] if size > max_bytes else text


def stderr_reason(path: Path, limit: int = REASON_LIMIT) -> str:
    """The last meaningful line of the file at ``path`` (its last ``STDERR_TAIL_BYTES`` only); "" when
    it is missing, unreadable or says nothing."""
    try:
        return last_meaningful_line(tail_text(path, STDERR_TAIL_BYTES), limit)
    except OSError:
        return ""


def with_reason(status: str, reason: str) -> str:
    """``reason (status)``: what the job said first, then how it ended; ``status`` alone without one."""
    if not reason:
        return status
    return f"{reason} ({status[:1].lower()}{status[1:]})"
