"""Where a job may see its staged volumes: the checks every backend makes of a mount's target.

A mount (``base.Mount``) shows a staged file or directory (its ``source``) to the job at ``target``,
an absolute path inside the job. Whatever the backend, a target

* is an absolute path without ``..`` (and is not ``/``);
* does not cover, nor lie inside, what the job needs for itself: the system's directories, ``/proc``,
  ``/dev``, and what each backend adds (the sandbox its code directories, caches and the job
  directory; a pod its data volume; a Slurm job its control files);
* is the target of one mount only, and no mount lies inside another (one would hide the other, or
  make its mount point in the other's source: a shared cache the job must never write).

Standard library only: the local runner imports it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import NamedTuple, Protocol, TypeVar

SYSTEM_PATHS = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev", "/sys",
)  # fmt: skip
"""What no mount may cover or lie in, on any backend: the system and its kernel interfaces."""


class MountLike(Protocol):
    """``base.Mount``, or the runner's :class:`VolumeMount` (the runner cannot import ``base``)."""

    @property
    def source(self) -> Path: ...

    @property
    def target(self) -> str: ...

    @property
    def read_only(self) -> bool: ...


M = TypeVar("M", bound=MountLike)


@dataclass(frozen=True)
class VolumeMount:
    """A mount as the local runner receives it on its command line (``--mount``)."""

    source: Path
    target: str
    read_only: bool = True


class Reserved(NamedTuple):
    """A path of the job's own that no mount may cover; nor lie inside, unless ``inside_ok``."""

    path: PurePosixPath
    what: str
    inside_ok: bool = False


def reserved(paths: Iterable[str | PurePath], what: str, inside_ok: bool = False) -> list[Reserved]:
    return [Reserved(PurePosixPath(str(p)), what, inside_ok) for p in paths]


def target_path(target: str) -> PurePosixPath:
    """``target`` as a normalised absolute path; ValueError when it cannot be a mount's target."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"mount target {target!r} must be a non-empty path")
    if any(c in target for c in "\0\n"):
        raise ValueError(f"mount target {target!r} contains a NUL or newline character")
    path = PurePosixPath(target)
    if not path.is_absolute():
        raise ValueError(f"mount target {target!r} is not an absolute path")
    if ".." in path.parts:
        raise ValueError(f"mount target {target!r} contains '..'")
    path = PurePosixPath("/", *path.parts[1:])  # '//x' is '/x'
    if path == PurePosixPath("/"):
        raise ValueError(f"mount target {target!r} would cover the job's whole file system")
    return path


def _check_reserved(target: PurePosixPath, keep: Reserved) -> None:
    if target == keep.path or keep.path.is_relative_to(target):
        raise ValueError(f"mount target {target} would cover {keep.what} {keep.path}")
    if not keep.inside_ok and target.is_relative_to(keep.path):
        raise ValueError(f"mount target {target} lies inside {keep.what} {keep.path}")


def check_targets(
    mounts: Sequence[M], keep: Iterable[Reserved], *, forbidden_chars: str = ""
) -> list[tuple[M, PurePosixPath]]:
    """Each mount with its normalised target, ordered by target; ValueError (saying which target and
    why) for a target the rules above refuse, or holding one of ``forbidden_chars``."""
    keep = list(keep)
    checked: list[tuple[M, PurePosixPath]] = []
    for mount in mounts:
        target = target_path(mount.target)
        bad = sorted({c for c in forbidden_chars if c in mount.target})
        if bad:
            raise ValueError(
                f"mount target {target} contains {' or '.join(map(repr, bad))}, not allowed here"
            )
        for item in keep:
            _check_reserved(target, item)
        checked.append((mount, target))
    checked.sort(key=lambda pair: pair[1].parts)
    for i, (_, target) in enumerate(checked):
        for _, other in checked[i + 1 :]:
            if other == target:
                raise ValueError(f"two mounts have the same target {target}")
            if other.is_relative_to(target):
                raise ValueError(f"mount targets {target} and {other} nest: one would be inside the other")
    return checked


def share_read_only(source: Path) -> None:
    """Let every uid read ``source`` and nobody but its owner write it: files lose their write bits
    (0444), directories (walked, symbolic links never followed) get r-x for all. The owner stays: a
    read-only source is a hard link to the platform's shared cache, which no job may own."""
    paths = [source]
    if source.is_dir() and not source.is_symlink():
        for root, dirs, files in os.walk(source):
            paths += [Path(root, name) for name in [*dirs, *files]]
    for path in paths:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            mode = stat.S_IMODE(st.st_mode) | 0o555
        elif stat.S_ISREG(st.st_mode):
            mode = (stat.S_IMODE(st.st_mode) & ~0o222) | 0o444
        else:
            continue  # a symbolic link (chmod would follow it) or a special file
        if mode != stat.S_IMODE(st.st_mode):
            os.chmod(path, mode)
