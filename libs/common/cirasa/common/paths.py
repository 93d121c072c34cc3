"""Where user files and job directories live, and the one check every path goes through."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

_SAFE = re.compile(rb"[A-Za-z0-9_-]")
MAX_NAME = 128


def safe_user(user: str) -> str:
    """A directory name for a user key, injective: two users never share a directory.

    Letters, digits, ``_`` and ``-`` stay; every other byte of the UTF-8 form becomes ``+XX`` (not
    ``%``, which Slurm expands in file names), so ``alice@example.org``, ``alice.example@org`` and
    ``alice_example_org`` stay apart. A name
    longer than 128 characters keeps its first 64 and gains ``~`` and a SHA-256 of the whole key;
    ``~`` never comes out of the encoding, so a long name cannot equal a short one.
    """
    if not user:
        return "anonymous"
    name = "".join(
        chr(byte) if _SAFE.fullmatch(bytes([byte])) else f"+{byte:02X}" for byte in user.encode("utf-8")
    )
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:64]}~{hashlib.sha256(user.encode('utf-8')).hexdigest()}"


def job_dir_for(user: str, job_id: str) -> PurePosixPath:
    """caesar-rest's layout, relative to the jobs root: ``<user>/job_<job_id>``."""
    return PurePosixPath(safe_user(user)) / f"job_{job_id}"


def resolve_under(root: Path, relpath: str) -> Path:
    """``root/relpath``, refusing anything that would leave ``root`` (absolute paths, ``..``, symlinks)."""
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"refusing path {relpath!r}: it must be relative and stay inside its root")
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"refusing path {relpath!r}: it leaves its root")
    return target
