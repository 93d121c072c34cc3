"""Staged volumes in the bubblewrap sandbox (issue 11), on the real local backend.

The platform's cache holds two blobs; the job directory holds what the scheduler stages: read-only hard
links to them in ``.cirasa/volumes`` (a file volume and a directory volume) and a writable directory in
``volumes/``. A job reads the read-only ones at their targets, tries to change them, and writes into the
writable one; every outcome goes to ``mounts.json`` in its job directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cirasa.backends.base import BackendStatus, BackendUnavailable, JobSpec, Mount, TrackedJob
from cirasa.backends.local import LocalBackend, LocalOptions, read_local_status
from cirasa.backends.local_runner import CONTROL_DIR, STATE_FILE, mount_option
from cirasa.backends.sandbox import NOBODY, sandbox_available
from cirasa.common.events import Resources

RESOURCES = Resources(cores=1, memory_gib=1, duration_s=120)
SKY = b"SIMPLE  = T / the shared sky\n"
ROW = b"1 12.5 -45.0 3.2\n"
REF = b"reference catalogue\n"

JOB = r"""
import errno, json, os
seen = {}
def attempt(name, action):
    try:
        seen[name] = ["done", action()]
    except OSError as exc:
        seen[name] = ["refused", errno.errorcode.get(exc.errno, str(exc.errno))]
def write(path, mode="w"):
    with open(path, mode) as fh:
        return fh.write("forged")
attempt("read_file", lambda: open("/data/x.txt").read())
attempt("list_dir", lambda: sorted(os.listdir("/tmp/catalogue")))
attempt("read_dir_file", lambda: open("/tmp/catalogue/sub/b.txt").read())
attempt("write_file", lambda: write("/data/x.txt", "r+"))
attempt("append_file", lambda: write("/data/x.txt", "a"))
attempt("chmod_file", lambda: os.chmod("/data/x.txt", 0o666))
attempt("replace_file", lambda: os.rename("/data/x.txt", "/data/y.txt"))
attempt("write_dir_file", lambda: write("/tmp/catalogue/a.txt", "a"))
attempt("create_in_dir", lambda: write("/tmp/catalogue/new.txt"))
attempt("remove_in_dir", lambda: os.unlink("/tmp/catalogue/a.txt"))
attempt("create_in_open_dir", lambda: write("/tmp/catalogue/sub/new.txt"))
attempt("write_open_file", lambda: write("/tmp/catalogue/sub/b.txt", "a"))
attempt("read_visible", lambda: open("/opt/ref.txt").read())
attempt("write_visible_link", lambda: write("volumes/ref/ref.txt", "a"))
attempt("write_scratch", lambda: write("/scratch/out.txt"))
attempt("read_scratch", lambda: open("/scratch/pre.txt").read())
attempt("see_staged", lambda: os.listdir(".cirasa"))
json.dump(seen, open("mounts.json", "w"))
"""


def wait_final(backend: LocalBackend, job: TrackedJob, timeout_s: float = 60.0) -> BackendStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.poll([job])[job.job_id]
        if status is not None and status.state.is_terminal:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job.job_id} did not end in {timeout_s} s: {read_local_status(job.job_dir)}")


def staged(tmp_path: Path) -> dict[str, Path]:
    """The cache's blobs, and a job directory with the volumes staged from them as the scheduler does."""
    cache = tmp_path / "cache"
    cache.mkdir()
    sky, row, ref = cache / "blob-sky", cache / "blob-row", cache / "blob-ref"
    sky.write_bytes(SKY)
    row.write_bytes(ROW)
    ref.write_bytes(REF)
    for blob in (sky, row, ref):
        blob.chmod(0o444)
    job_dir = tmp_path / "jobs" / "alice" / "job_m"
    volumes = job_dir / CONTROL_DIR / "volumes"
    (volumes / "sky").mkdir(parents=True)
    os.link(sky, volumes / "sky" / "x.txt")
    catalogue = volumes / "catalogue"
    (catalogue / "sub").mkdir(parents=True)
    os.link(row, catalogue / "a.txt")
    (catalogue / "sub" / "b.txt").write_bytes(ROW)
    # staged with open modes: only the read-only mount keeps the job from writing here
    (catalogue / "sub").chmod(0o777)
    (catalogue / "sub" / "b.txt").chmod(0o666)
    scratch = job_dir / "volumes" / "scr:atch"  # a colon in a path must not confuse the runner
    scratch.mkdir(parents=True)
    (scratch / "pre.txt").write_text("staged")
    # a read-only volume staged where the job also sees it through its own directory
    (job_dir / "volumes" / "ref").mkdir()
    os.link(ref, job_dir / "volumes" / "ref" / "ref.txt")
    return {
        "job_dir": job_dir,
        "sky": sky,
        "row": row,
        "ref": ref,
        "catalogue": catalogue,
        "scratch": scratch,
    }


def mounts_of(paths: dict[str, Path]) -> tuple[Mount, ...]:
    volumes = paths["job_dir"] / CONTROL_DIR / "volumes"
    return (
        Mount(volumes / "sky" / "x.txt", "/data/x.txt"),
        Mount(paths["catalogue"], "/tmp/catalogue"),  # in the sandbox's own /tmp
        Mount(paths["scratch"], "/scratch", read_only=False),
        Mount(paths["job_dir"] / "volumes" / "ref" / "ref.txt", "/opt/ref.txt"),
    )


def test_the_sandbox_starts_here() -> None:
    assert sandbox_available() is None


def test_a_job_reads_its_volumes_writes_only_the_writable_one(tmp_path: Path) -> None:
    paths = staged(tmp_path)
    job_dir = paths["job_dir"]
    blob_before = {name: os.stat(paths[name]) for name in ("sky", "row", "ref")}
    spec = JobSpec("m", "alice", "script", [sys.executable, "-c", JOB], job_dir, RESOURCES,
                   mounts=mounts_of(paths))  # fmt: skip
    backend = LocalBackend()
    backend.submit(spec)
    status = wait_final(backend, TrackedJob("m", None, job_dir))
    assert status.state.value == "SUCCESS", (status, (job_dir / "stderr.log").read_text()[-2000:])
    seen: dict[str, Any] = json.loads((job_dir / "mounts.json").read_text())

    assert seen["read_file"] == ["done", SKY.decode()]
    assert seen["list_dir"] == ["done", ["a.txt", "sub"]]
    assert seen["read_dir_file"] == ["done", ROW.decode()]
    assert seen["read_visible"] == ["done", REF.decode()]
    for attack in ("write_file", "append_file", "chmod_file", "replace_file"):
        assert seen[attack][0] == "refused", (attack, seen[attack])
    for attack in (
        "write_dir_file",
        "create_in_dir",
        "remove_in_dir",
        "write_open_file",
        "write_visible_link",
    ):
        assert seen[attack][0] == "refused", (attack, seen[attack])
    # read-only mounts, not only modes: the owner of a blob (a platform without root) could chmod it
    assert seen["create_in_open_dir"] == ["refused", "EROFS"]
    assert seen["chmod_file"] == ["refused", "EROFS"]
    assert seen["see_staged"] == ["done", []]  # the control folder is hidden, staged volumes and all

    # the shared blobs are untouched: same inode, content, mode and owner
    for name, content in (("sky", SKY), ("row", ROW), ("ref", REF)):
        after = os.stat(paths[name])
        assert paths[name].read_bytes() == content
        assert (after.st_ino, after.st_uid, after.st_gid) == (
            blob_before[name].st_ino, blob_before[name].st_uid, blob_before[name].st_gid,
        )  # fmt: skip
        assert after.st_mode & 0o777 == 0o444
    assert sorted(p.name for p in paths["catalogue"].iterdir()) == ["a.txt", "sub"]
    assert [p.name for p in (paths["catalogue"] / "sub").iterdir()] == ["b.txt"]
    assert (paths["catalogue"] / "sub" / "b.txt").read_bytes() == ROW

    # the writable volume got the job's file, in its source directory
    assert seen["read_scratch"] == ["done", "staged"]
    assert seen["write_scratch"] == ["done", len("forged")]
    assert (paths["scratch"] / "out.txt").read_text() == "forged"
    if os.geteuid() == 0:
        assert os.stat(paths["scratch"]).st_uid == NOBODY  # the job's, like the rest of its directory
        assert os.stat(paths["scratch"] / "out.txt").st_uid == NOBODY
        for name in ("sky", "row", "ref"):
            assert os.stat(paths[name]).st_uid == 0  # never chowned to the job's uid
        assert os.stat(paths["catalogue"] / "sub" / "b.txt").st_mode & 0o777 == 0o444  # made read-only


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("data/x.txt", "not an absolute path"),
        ("/data/../etc/passwd", "contains '..'"),
        ("/", "whole file system"),
        ("/proc/self", "lies inside the system path /proc"),
        ("/usr", "would cover the system path /usr"),
        ("/dev", "would cover the system path /dev"),
        ("/tmp", "would cover the sandbox's /tmp"),
        ("/tmp/cache", "would cover the sandbox's cache directory /tmp/cache"),
        ("/tmp/matplotlib/fontlist.json", "lies inside the sandbox's cache directory"),
        (sys.prefix, "the code directory"),
        ("{job_dir}", "would cover the job directory"),
        ("{job_dir}/sub", "lies inside the job directory"),
        ("{parent}", "would cover the job directory"),
    ],
)
def test_a_bad_target_is_refused_before_the_job_starts(tmp_path: Path, target: str, why: str) -> None:
    paths = staged(tmp_path)
    job_dir = paths["job_dir"]
    target = target.format(job_dir=job_dir.resolve(), parent=job_dir.resolve().parent)
    bad = Mount(paths["catalogue"], target)
    spec = JobSpec("bad", "alice", "script", [sys.executable, "-c", "pass"], job_dir, RESOURCES,
                   mounts=(*mounts_of(paths)[:1], bad))  # fmt: skip
    with pytest.raises(ValueError, match=f"mount target .*{why}"):
        LocalBackend().submit(spec)
    assert not (job_dir / CONTROL_DIR / "submitted").exists()  # nothing was started


@pytest.mark.parametrize(
    ("mounts", "why"),
    [
        ([("sky/x.txt", "/data/x.txt"), ("catalogue", "/data/x.txt")], "same target /data/x.txt"),
        ([("catalogue", "/data"), ("sky/x.txt", "/data/x.txt")], "/data and /data/x.txt nest"),
    ],
)
def test_clashing_targets_are_refused(tmp_path: Path, mounts: list[tuple[str, str]], why: str) -> None:
    paths = staged(tmp_path)
    volumes = paths["job_dir"] / CONTROL_DIR / "volumes"
    spec = JobSpec("bad", "alice", "script", [sys.executable, "-c", "pass"], paths["job_dir"], RESOURCES,
                   mounts=tuple(Mount(volumes / src, dst) for src, dst in mounts))  # fmt: skip
    with pytest.raises(ValueError, match=why):
        LocalBackend().submit(spec)


def test_a_source_outside_the_job_directory_is_refused(tmp_path: Path) -> None:
    paths = staged(tmp_path)
    spec = JobSpec("bad", "alice", "script", [sys.executable, "-c", "pass"], paths["job_dir"], RESOURCES,
                   mounts=(Mount(paths["sky"], "/data/x.txt"),))  # fmt: skip
    with pytest.raises(ValueError, match="is not in the job directory"):
        LocalBackend().submit(spec)
    writable = Mount(paths["job_dir"] / CONTROL_DIR / "volumes" / "sky", "/data", read_only=False)
    with pytest.raises(ValueError, match=r"writable mount source .* control folder"):
        LocalBackend().submit(JobSpec(**{**spec.__dict__, "mounts": (writable,)}))


def test_the_runner_itself_refuses_a_bad_target_and_says_why(tmp_path: Path) -> None:
    """A runner given a mount it cannot make (bypassing the backend's check) fails the job at its start."""
    paths = staged(tmp_path)
    job_dir = paths["job_dir"]
    bad = Mount(paths["catalogue"], "/proc/sys/kernel")
    runner = [sys.executable, "-m", "cirasa.backends.local_runner", "--job-dir", str(job_dir),
              "--cores", "1", "--memory-gib", "1", "--timeout-s", "30", "--sandbox",
              "--mount", mount_option(bad), "--", "/bin/true"]  # fmt: skip
    done = subprocess.run(runner, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    state = json.loads((job_dir / CONTROL_DIR / STATE_FILE).read_text())
    assert state["state"] == "FAILURE"
    assert "mount target /proc/sys/kernel lies inside the system path /proc" in state["status"]
    assert os.stat(paths["row"]).st_mode & 0o777 == 0o444  # nothing was prepared for it


def test_mounts_without_a_sandbox_are_refused(tmp_path: Path) -> None:
    paths = staged(tmp_path)
    spec = JobSpec("open", "alice", "script", [sys.executable, "-c", "pass"], paths["job_dir"], RESOURCES,
                   mounts=mounts_of(paths))  # fmt: skip
    with pytest.raises(BackendUnavailable, match="volumes are mounted at their targets only in a sandbox"):
        LocalBackend(LocalOptions(sandbox=False)).submit(spec)
    assert not (paths["job_dir"] / CONTROL_DIR / "submitted").exists()


def test_an_input_staged_in_the_control_folder_stays_visible(tmp_path: Path) -> None:
    """A fetched executable is staged in ``.cirasa/staged``: the job reads it there, and nothing else of
    the control folder."""
    job_dir = tmp_path / "jobs" / "alice" / "job_s"
    staged_input = job_dir / CONTROL_DIR / "staged" / "analysis.py"
    staged_input.parent.mkdir(parents=True)
    staged_input.write_text("print('staged code')")
    (job_dir / CONTROL_DIR / "secret").write_text("runner's")
    probe = (
        "import json, os\n"
        "found = {'input': open(os.sys.argv[1]).read(), 'control': sorted(os.listdir('.cirasa')),\n"
        "         'staged': sorted(os.listdir('.cirasa/staged'))}\n"
        "json.dump(found, open('found.json', 'w'))\n"
    )
    spec = JobSpec("s", "alice", "script", [sys.executable, "-c", probe, str(staged_input.resolve())],
                   job_dir, RESOURCES, inputs=(staged_input,))  # fmt: skip
    backend = LocalBackend()
    backend.submit(spec)
    status = wait_final(backend, TrackedJob("s", None, job_dir))
    assert status.state.value == "SUCCESS", (status, (job_dir / "stderr.log").read_text()[-2000:])
    found = json.loads((job_dir / "found.json").read_text())
    assert found == {"input": "print('staged code')", "control": ["staged"], "staged": ["analysis.py"]}
