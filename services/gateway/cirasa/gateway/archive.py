"""The job directory as a gzip tar whose root folder is ``job_<id>/`` (caesar-rest's layout).

The runner's control folder (``.cirasa``: the submitted command line with server paths, host name and
process ids) stays out: an archive holds what the job made, nothing about the server.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

CONTROL_DIR = ".cirasa"


def build_job_archive(job_dir: Path, root_name: str) -> Path:
    """Write the archive to a temporary file and return its path; the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix=f"{root_name}-", suffix=".tar.gz")
    path = Path(name)
    try:
        with open(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz", compresslevel=6) as tar:
            for item in sorted(job_dir.rglob("*")):
                if item.is_symlink() or not (item.is_file() or item.is_dir()):
                    continue  # never follow links out of the job directory
                if item.relative_to(job_dir).parts[0] == CONTROL_DIR:
                    continue
                tar.add(item, arcname=f"{root_name}/{item.relative_to(job_dir)}", recursive=False)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def contained_file(root: Path, path: Path) -> Path | None:
    """``path`` resolved, when that is a regular file inside ``root`` (resolved too): a link out of a
    job or data directory, or to something that is not a file, is never served."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    inside = resolved.is_relative_to(root.resolve())
    return resolved if inside and resolved.is_file() else None


def first_file(directory: Path, pattern: str) -> Path | None:
    """The first file of ``directory`` (in name order) matching ``pattern`` that may be served."""
    served = (contained_file(directory, path) for path in sorted(directory.glob(pattern)))
    return next((path for path in served if path is not None), None)


def contained_dir(root: Path, path: Path) -> Path | None:
    """``path`` when it is a directory that, resolved, lies inside ``root``: a job directory that is a
    link elsewhere is treated as missing."""
    inside = path.is_dir() and path.resolve().is_relative_to(root.resolve())
    return path if inside else None
