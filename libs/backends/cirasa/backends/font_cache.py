"""Matplotlib's font list, built once per host and shown read-only to every sandboxed job.

A sandbox starts with an empty matplotlib cache (``MPLCONFIGDIR`` on its own tmpfs), so every job that
draws a preview rebuilt matplotlib's font list: it runs ``fc-list`` and reads every font on the system
(0.5 s on a server with a few fonts, many seconds on a desktop with thousands), and writes
"Fontconfig error" lines into the job's stderr. Instead the runner builds the list once, outside any
sandbox, in its user's cache directory, and binds that file read-only into the job's cache directory:
jobs share nothing they could write.

Standard library only: the local runner imports it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD_TIMEOUT_S = 120
FONT_LIST_GLOB = "fontlist-v*.json"


def cache_dir() -> Path | None:
    """Where this user keeps the font list of this Python's matplotlib (``$XDG_CACHE_HOME/cirasa/
    matplotlib/<key>``; a new matplotlib gets a new key); None without matplotlib."""
    try:
        spec = importlib.util.find_spec("matplotlib")  # finds it, imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    try:
        stamp = os.stat(spec.origin).st_mtime_ns
    except OSError:
        return None
    key = hashlib.sha256(f"{sys.executable}|{spec.origin}|{stamp}".encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cirasa" / "matplotlib" / key


def _ours(path: Path) -> bool:
    """Written by this user only: a file another local user could change is never shown to jobs."""
    try:
        for item in (path, *list(path.parents)[:3]):  # the file, its key, matplotlib/ and cirasa/
            st = item.stat()
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def _build(into: Path) -> Path | None:
    """Have matplotlib write its font list into ``into`` (from a scratch home: no user's own fonts)."""
    into.mkdir(parents=True, exist_ok=True, mode=0o755)
    with tempfile.TemporaryDirectory(prefix="fontlist-", dir=into) as scratch:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "MPLCONFIGDIR": scratch,
            "XDG_CACHE_HOME": scratch,
            "XDG_CONFIG_HOME": scratch,
        }
        try:
            subprocess.run(
                [sys.executable, "-c", "import matplotlib.font_manager"],
                env=env,
                capture_output=True,
                timeout=BUILD_TIMEOUT_S,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None  # matplotlib failed: jobs build their own list, as before
        built = sorted(Path(scratch).glob(FONT_LIST_GLOB))
        if not built:
            return None
        built[0].chmod(0o644)
        final = into / built[0].name
        os.replace(built[0], final)  # atomic: a racing runner's copy is as good
        return final


def host_font_list() -> Path | None:
    """The host's font list for this Python's matplotlib: built on first use; None when it cannot be."""
    here = cache_dir()
    if here is None:
        return None
    found = sorted(here.glob(FONT_LIST_GLOB)) or [b for b in [_build(here)] if b is not None]
    return found[0] if found and _ours(found[0]) else None


def font_list_binds(mpl_config_dir: str) -> list[str]:
    """bubblewrap arguments that show the host's font list in the sandbox's matplotlib cache directory."""
    font_list = host_font_list()
    if font_list is None:
        return []
    return ["--ro-bind", str(font_list), f"{mpl_config_dir}/{font_list.name}"]
