"""The job archive holds what the job made and nothing about the server (issue 9)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from cirasa.gateway.archive import build_job_archive


def test_archive_leaves_out_the_control_folder_and_links(tmp_path: Path) -> None:
    job = tmp_path / "job_1"
    (job / ".cirasa").mkdir(parents=True)
    (job / ".cirasa" / "submitted").write_text('{"argv": ["/srv/venv/bin/python"], "host": "node7"}')
    (job / "catalog-sky.json").write_text("{}")
    (job / "sub").mkdir()
    (job / "sub" / "native.txt").write_text("x")
    (job / "passwd").symlink_to("/etc/passwd")
    archive = build_job_archive(job, "job_1")
    try:
        with tarfile.open(archive) as tar:
            names = sorted(tar.getnames())
            contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())  # type: ignore[union-attr]
    finally:
        archive.unlink()
    assert names == ["job_1/catalog-sky.json", "job_1/sub", "job_1/sub/native.txt"]
    assert b"/srv" not in contents and b"node7" not in contents
