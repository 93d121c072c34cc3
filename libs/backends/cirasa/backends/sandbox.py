"""The bubblewrap sandbox every local job runs in.

The runner (``local_runner``) stays outside and prefixes the job's command with what
:func:`sandbox_argv` builds, so the job gets:

* new PID, IPC, UTS, network (loopback only) and cgroup namespaces: it sees no other process, reaches
  no broker or database, and everything it started dies with it (the namespace's init is killed);
* a root file system of its own: the system's ``/usr`` (and what ``/bin``, ``/lib`` point to), the
  Python installation and the platform's code read-only, its inputs read-only, its job directory
  the only writable place, an empty ``/tmp`` and ``/dev/shm``; the job directory's control folder
  (``.cirasa``, where the runner records state and the scheduler drops the cancel marker) is hidden
  behind an empty read-only mount, so a job can neither read nor forge its own state (only inputs
  staged there, such as a fetched executable, are shown in it);
* its staged volumes (``Sandbox.mounts``) at their targets, read-only or writable. A source is a file or
  directory of the job directory: a read-only one is usually a hard link to the platform's shared cache
  in ``.cirasa/volumes``, made readable but never given to the job's uid; a writable one (in
  ``volumes/``) is the job's like the rest of its directory. Targets are checked (``mounts.py``): none
  may cover the system, ``/proc``, ``/dev``, the caches in ``/tmp``, the code, the inputs or the job
  directory, nor lie in them (``/tmp/x`` is fine: it is made in the sandbox's own ``/tmp``);
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
from pathlib import Path, PurePosixPath

from cirasa.backends.font_cache import font_list_binds
from cirasa.backends.mounts import (
    SYSTEM_PATHS,
    MountLike,
    Reserved,
    check_targets,
    reserved,
    share_read_only,
)

CONTROL_DIR = ".cirasa"
VOLUMES_DIR = "volumes"  # <job dir>/.cirasa/volumes: read-only volumes staged for the job
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
    """What one job may see: its directory (read-write), its inputs and code (read-only), its mounts."""

    job_dir: Path
    inputs: Sequence[Path] = ()
    uid: int = NOBODY
    gid: int = NOBODY
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[MountLike] = ()


@dataclass(frozen=True)
class BoxMount:
    """A mount the sandbox makes: its source resolved, its target checked."""

    source: Path
    target: Path
    read_only: bool


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


def _inside(path: Path, directory: Path) -> bool:
    return directory in path.parents


def _mount_reservations(box: Sandbox, job_dir: Path) -> list[Reserved]:
    keep = reserved(SYSTEM_PATHS, "the system path")
    keep.append(Reserved(PurePosixPath("/tmp"), "the sandbox's", inside_ok=True))
    keep += reserved(CACHE_DIRS, "the sandbox's cache directory")
    keep += reserved(code_dirs(), "the code directory")
    keep += reserved((Path(p).resolve() for p in box.inputs), "the job's input")
    keep.append(Reserved(PurePosixPath(str(job_dir)), "the job directory"))
    return keep


def _mount_source(mount: MountLike, job_dir: Path) -> Path:
    """The mount's source, resolved; ValueError unless it is a file or directory of the job directory
    (read-only ones may be in ``.cirasa/volumes``; writable ones not in the control folder at all)."""
    source = Path(mount.source)
    if not source.is_absolute():
        raise ValueError(f"mount source {source} is not an absolute path")
    if source.is_symlink():
        raise ValueError(f"mount source {source} is a symbolic link")
    if not source.is_dir() and not source.is_file():
        raise ValueError(f"mount source {source} is neither a file nor a directory (missing?)")
    resolved = source.resolve()
    if not _inside(resolved, job_dir):
        raise ValueError(f"mount source {source} is not in the job directory {job_dir}")
    control = job_dir / CONTROL_DIR
    if resolved == control or _inside(resolved, control):
        if not mount.read_only:
            raise ValueError(f"writable mount source {source} is in the job's control folder")
        if not _inside(resolved, control / VOLUMES_DIR):
            raise ValueError(f"mount source {source} is in the job's control folder, not in its volumes")
    return resolved


def sandbox_mounts(box: Sandbox) -> list[BoxMount]:
    """The box's mounts, checked and ordered by target; ValueError, saying why, for any the sandbox
    cannot make (a target ``mounts.check_targets`` refuses, a source that is not the job's)."""
    job_dir = box.job_dir.resolve()
    checked = check_targets(box.mounts, _mount_reservations(box, job_dir))
    return [
        BoxMount(_mount_source(mount, job_dir), Path(str(target)), mount.read_only)
        for mount, target in checked
    ]


def _bind_args(binds: Iterable[tuple[Path, Path, str]], made: set[Path]) -> list[str]:
    """``--bind``/``--ro-bind`` of each (source, destination, how), in order, after the destination's
    missing parents (those not in ``made``, which grows) are made 0755."""
    args: list[str] = []
    for source, dest, how in binds:
        # bubblewrap would make the missing parents 0700 (root's): the job could not reach its files
        for parent in reversed(dest.parents):
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]
        args += [how, str(source), str(dest)]
    return args


def _as_unprivileged(box: Sandbox) -> list[str]:
    """Drop to the unprivileged uid as the last step, after the mounts are made (as root)."""
    return [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={box.uid}",
        f"--regid={box.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def sandbox_argv(
    box: Sandbox, argv: Sequence[str], bwrap: str | None = None, share_font_list: bool = False
) -> list[str]:
    """``argv`` wrapped so that it runs inside the sandbox described by ``box``; with
    ``share_font_list``, matplotlib finds the host's font list built (``font_cache``). ValueError for
    a mount the sandbox cannot make."""
    bwrap = bwrap or bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    as_root = os.geteuid() == 0
    job_dir = box.job_dir.resolve()
    mounts = sandbox_mounts(box)
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
    control = job_dir / CONTROL_DIR
    inputs = [Path(path).resolve() for path in box.inputs]
    binds = [(path, path, "--ro-bind") for path in code_dirs()]
    binds += [(path, path, "--ro-bind") for path in inputs if not _inside(path, control)]
    binds.append((job_dir, job_dir, "--bind"))
    binds += [(m.source, m.target, "--ro-bind" if m.read_only else "--bind") for m in mounts]
    made = {Path("/"), Path("/tmp")}  # /tmp is the tmpfs above: a destination may be in it
    args += _bind_args(binds, made)
    args += ["--tmpfs", str(control)]
    # inputs staged in the control folder (a fetched executable) stay visible over its empty tmpfs
    hidden = [(path, path, "--ro-bind") for path in inputs if _inside(path, control)]
    args += _bind_args(hidden, made | {job_dir, control})
    args += ["--remount-ro", str(control)]
    args += ["--chdir", str(job_dir)]
    args += _environment(box)
    args += ["--"]
    if as_root:
        args += _as_unprivileged(box)
    return args + list(argv)


def prepare_job_dir(box: Sandbox) -> None:
    """Give the job's uid its directory (the control folder stays the runner's) and its inputs.

    Inputs get read permission for others: only the job's own inputs are visible in its sandbox, so
    this lets the unprivileged uid read them without showing it anything else. Read-only mount sources
    are made readable the same way and keep their owner (never the job's); writable ones are the job's
    like the rest of its directory. ValueError for a mount the sandbox cannot make.
    """
    mounts = sandbox_mounts(box)
    if os.geteuid() != 0:
        return
    for path in box.inputs:
        mode = os.stat(path).st_mode
        if mode & 0o444 != 0o444:
            os.chmod(path, mode | 0o444)
    shared = {m.source for m in mounts if m.read_only}
    for source in shared:
        share_read_only(source)
    job_dir = box.job_dir.resolve()
    for root, dirs, files in os.walk(job_dir):
        if Path(root) == job_dir:
            dirs[:] = [d for d in dirs if d != CONTROL_DIR]
        dirs[:] = [d for d in dirs if Path(root, d) not in shared]
        for name in [*dirs, *files]:
            if Path(root, name) not in shared:
                os.lchown(os.path.join(root, name), box.uid, box.gid)
    os.chown(job_dir, box.uid, box.gid)


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
