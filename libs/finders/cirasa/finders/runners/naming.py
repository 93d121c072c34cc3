"""Products named after the image's own name, not after the file the platform stored it as.

The platform stores an upload as ``<file id>.<ext>`` and hands the finder that path, with the name the
user gave the file as ``--image-name``. A finder then reads the image through a link of that name
(sanitized) in its output directory, so everything it derives from the image's name (the catalogue's
``image``, ``catalog-<name>.json``, ``plot_<name>.png``, its native files, its error messages) says
the user's name. The link is never served nor archived (only regular files are).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_file_name(name: str, suffix: str) -> str:
    """``name`` (its last path part) with only letters, digits and ``._+-``, ending in ``suffix``;
    "" when nothing is left."""
    base = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip("._+-")
    if not base:
        return ""
    if suffix and not base.lower().endswith(suffix.lower()):
        base += suffix
    if len(base) > MAX_NAME:
        base = base[: MAX_NAME - len(suffix)] + suffix
    return base


def named_image(image: Path, name: str | None, out_dir: Path) -> Path:
    """A link named ``name`` (sanitized, with the image's suffix) to ``image`` in ``out_dir``; the image
    itself when there is no name, or the link cannot be made (another file has that name)."""
    link_name = safe_file_name(name or "", "".join(image.suffixes[-2:]) if image.suffix else "")
    if not link_name or link_name == image.name:
        return image
    target = image.resolve()
    link = out_dir / link_name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() == target:
            return link
        link.symlink_to(target)
    except OSError:
        return image
    return link


def add_image_name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-name", default=None, help="the image's own name (names the products)")
