"""Where user files and job directories live, and the one check every path goes through."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_SAFE_USER = re.compile(r"[^A-Za-z0-9_-]")


def safe_user(user: str) -> str:
    """A directory name for a user: caesar-rest's ``@``/``.`` → ``_`` mapping, and nothing unsafe left."""
    name = _SAFE_USER.sub("_", user)[:128]
    return name or "anonymous"


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
