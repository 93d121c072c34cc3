"""Matplotlib's font list is built once per host and shown read-only to every sandboxed job."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from cirasa.backends import font_cache
from cirasa.backends.local import read_local_status, start_local_job
from cirasa.backends.sandbox import CACHE_DIRS, NOBODY, sandbox_available


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_built_once_then_found(cache_home: Path) -> None:
    here = font_cache.cache_dir()
    assert here is not None and cache_home in here.parents
    built = font_cache.host_font_list()
    assert built is not None and built.parent == here and built.name.startswith("fontlist-v")
    assert built.stat().st_mode & 0o777 == 0o644
    stamp = built.stat().st_mtime_ns
    assert font_cache.host_font_list() == built and built.stat().st_mtime_ns == stamp  # not built again
    assert font_cache.font_list_binds("/tmp/matplotlib") == [
        "--ro-bind", str(built), f"/tmp/matplotlib/{built.name}"
    ]  # fmt: skip


def test_a_list_others_could_change_is_not_shown(cache_home: Path) -> None:
    built = font_cache.host_font_list()
    assert built is not None
    built.chmod(0o666)
    assert font_cache.host_font_list() is None and font_cache.font_list_binds("/tmp/matplotlib") == []


@pytest.mark.skipif(  # in CI a sandbox that cannot start fails the test instead
    sandbox_available() is not None and not os.environ.get("CI"),
    reason=f"no sandbox here: {sandbox_available()}",
)
def test_a_sandboxed_job_reads_the_hosts_list_and_cannot_change_it(cache_home: Path, tmp_path: Path) -> None:
    built = font_cache.host_font_list()
    assert built is not None
    job_dir = tmp_path / "job"
    probe = (
        "import os, matplotlib.font_manager as fm\n"
        f"print(sorted(os.listdir({CACHE_DIRS[0]!r})), fm.fontManager.ttflist != [])\n"
        f"open({CACHE_DIRS[0]!r} + '/{built.name}', 'a')\n"
    )
    sandbox = ["--sandbox", "--sandbox-uid", str(NOBODY)]
    start_local_job(job_dir, [sys.executable, "-c", probe], 1, 2, 60, sandbox=sandbox)
    deadline = time.monotonic() + 60
    while (status := read_local_status(job_dir)) is None or status.state not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert (job_dir / "stdout.log").read_text().strip() == f"['{built.name}'] True"  # nothing rebuilt
    assert status.state == "FAILURE", status  # the job could not open it for writing
    assert status.status.startswith(("PermissionError: ", "OSError: [Errno 30] Read-only")), status
