"""The bubblewrap sandbox every local job runs in.

The runner (``local_runner``) stays outside and prefixes the job's command with what
:func:`sandbox_argv` builds, so the job gets:

* new PID, IPC, UTS, network (loopback only) and cgroup namespaces: it sees no other process, reaches
  no broker or database, and everything it started dies with it (the namespace's init is killed);
* a root file system of its own: the system's ``/usr`` (and what ``/bin``, ``/lib`` point to), the
  Python installation and the platform's code read-only, its inputs read-only, its job directory
  the only writable place, an empty ``/tmp`` and ``/dev/shm``; the job directory's control folder
  (``.cirasa``, where the runner records state and the scheduler drops the cancel marker) is hidden
  behind an empty read-only mount, so a job can neither read nor forge its own state;
* an unprivileged uid and gid (``nobody`` unless configured), no capabilities, ``no_new_privs``;
* a scrubbed environment: no ``CIRASA_*``, no credentials, only what the job needs.

When the platform runs as root, bubblewrap makes the namespaces and mounts with root's rights and
``setpriv`` drops to the unprivileged uid as the last step inside; otherwise bubblewrap needs
unprivileged user namespaces and the job keeps the service's uid, mapped into its own namespace.

This module imports only the standard library: the runner must start fast without the service's
third-party packages.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cirasa.backends.font_cache import font_list_binds

CONTROL_DIR = ".cirasa"
NOBODY = 65534
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# read-only files of /etc that programs expect (dynamic linker cache, time zone, fonts, certificates)
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/etc/ssl/certs", "/etc/mime.types")
CACHE_DIRS = ("/tmp/matplotlib", "/tmp/cache", "/tmp/config")  # in the sandbox's own /tmp
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class SandboxUnavailable(OSError):
    """bubblewrap is missing: an OSError, so the runner records the job as one that could not start."""


@dataclass(frozen=True)
class Sandbox:
    """What one job may see: its directory (read-write), its inputs and code (read-only)."""

    job_dir: Path
    inputs: Sequence[Path] = ()
    uid: int = NOBODY
    gid: int = NOBODY
    env: Mapping[str, str] = field(default_factory=dict)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def code_dirs() -> list[Path]:
    """Directories the job's Python needs: the installation, the environment and the sys.path entries
    that hold the platform's own code (an editable install puts them outside site-packages)."""
    dirs = {Path(sys.base_prefix), Path(sys.prefix)}
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        dirs.add(Path(sysconfig.get_paths()[name]))
    import cirasa  # a namespace package: one portion per library and service

    dirs.update(Path(portion).resolve() for portion in cirasa.__path__)
    dirs.add(Path(sys.executable).resolve().parent)
    return _outermost(d for d in dirs if d.exists() and not _is_system(d))


def _is_system(path: Path) -> bool:
    return any(path == Path(s) or Path(s) in path.parents for s in SYSTEM_DIRS)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop every path inside another one of the list (one bind covers it)."""
    ordered = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _system_binds() -> list[str]:
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        if Path(name).exists():
            args += ["--ro-bind", name, name]
    return args


def _environment(box: Sandbox) -> list[str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(box.job_dir),
            "TMPDIR": "/tmp",
            # caches in the sandbox's own /tmp, so they do not clutter the job's products
            "MPLCONFIGDIR": CACHE_DIRS[0],
            "XDG_CACHE_HOME": CACHE_DIRS[1],
            "XDG_CONFIG_HOME": CACHE_DIRS[2],
            "PYTHONNOUSERSITE": "1",
        }
    )
    env.update(box.env)
    args = ["--clearenv"]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    return args


def sandbox_argv(
    box: Sandbox, argv: Sequence[str], bwrap: str | None = None, share_font_list: bool = False
) -> list[str]:
    """``argv`` wrapped so that it runs inside the sandbox described by ``box``; with
    ``share_font_list``, matplotlib finds the host's font list built (``font_cache``)."""
    bwrap = bwrap or bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    as_root = os.geteuid() == 0
    job_dir = box.job_dir.resolve()
    args = [bwrap, "--die-with-parent", "--new-session"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        args += ["--unshare-user"]
    args += ["--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev"]
    # an empty /tmp, and shared memory (BANE's worker processes share their maps through it)
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/dev/shm"]
    for cache in CACHE_DIRS:
        args += ["--perms", "1777", "--dir", cache]
    if share_font_list:
        args += font_list_binds(CACHE_DIRS[0])
    args += _system_binds()
    binds = [(path, "--ro-bind") for path in code_dirs()]
    binds += [(Path(path).resolve(), "--ro-bind") for path in box.inputs]
    binds.append((job_dir, "--bind"))
    made: set[Path] = {Path("/"), Path("/tmp")}
    for path, how in binds:
        # bubblewrap would make the missing parents 0700 (root's): the job could not reach its files
        for parent in reversed(path.parents):
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]
        args += [how, str(path), str(path)]
    control = job_dir / CONTROL_DIR
    args += ["--tmpfs", str(control), "--remount-ro", str(control)]
    args += ["--chdir", str(job_dir)]
    args += _environment(box)
    args += ["--"]
    if as_root:  # drop to the unprivileged uid as the last step, after the mounts are made
        args += [
            shutil.which("setpriv") or "/usr/bin/setpriv",
            f"--reuid={box.uid}",
            f"--regid={box.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return args + list(argv)


def prepare_job_dir(box: Sandbox) -> None:
    """Give the job's uid its directory (the control folder stays the runner's) and its inputs.

    Inputs get read permission for others: only the job's own inputs are visible in its sandbox, so
    this lets the unprivileged uid read them without showing it anything else.
    """
    if os.geteuid() != 0:
        return
    for path in box.inputs:
        mode = os.stat(path).st_mode
        if mode & 0o444 != 0o444:
            os.chmod(path, mode | 0o444)
    for root, dirs, files in os.walk(box.job_dir):
        if Path(root) == box.job_dir:
            dirs[:] = [d for d in dirs if d != CONTROL_DIR]
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), box.uid, box.gid)
    os.chown(box.job_dir, box.uid, box.gid)


@functools.cache
def sandbox_available() -> str | None:
    """None when a sandboxed command runs on this host; otherwise why not (for a clear NO)."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed on this platform's host"
    with tempfile.TemporaryDirectory(prefix="cirasa-sandbox-probe-") as probe:
        box = Sandbox(job_dir=Path(probe))
        prepare_job_dir(box)
        argv = sandbox_argv(box, ["/bin/true"], bwrap)
        try:
            result = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap could not start: {exc}"
    if result.returncode != 0:
        return f"bubblewrap could not start: {result.stderr.decode(errors='replace').strip()[:200]}"
    return None
