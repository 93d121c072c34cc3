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
