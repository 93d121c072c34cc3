"""Finders read an image through a link of its own (sanitized) name, so the products carry that name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirasa.finders.runners import aegean, notebook, photutils, pybdsf, sep, sleep
from cirasa.finders.runners.naming import MAX_NAME, named_image, safe_file_name


@pytest.mark.parametrize(
    ("name", "suffix", "safe"),
    [
        ("field B.fits", ".fits", "field_B.fits"),
        ("sky.png", ".png", "sky.png"),
        ("sky", ".fits", "sky.fits"),
        ("../../etc/passwd", ".fits", "passwd.fits"),
        ("C:\\maps\\M 31.FITS", ".fits", "M_31.FITS"),
        ("...", ".fits", ""),
        ("", ".fits", ""),
    ],
)
def test_safe_file_name(name: str, suffix: str, safe: str) -> None:
    assert safe_file_name(name, suffix) == safe


def test_a_long_name_keeps_its_suffix() -> None:
    safe = safe_file_name("x" * 500, ".fits")
    assert len(safe) == MAX_NAME and safe.endswith(".fits")


def test_the_image_is_read_through_a_link_of_its_own_name(tmp_path: Path) -> None:
    stored = tmp_path / "data" / "3f2a.fits"
    stored.parent.mkdir()
    stored.write_bytes(b"SIMPLE")
    out = tmp_path / "job"
    link = named_image(stored, "field B.fits", out)
    assert link == out / "field_B.fits" and link.is_symlink() and link.resolve() == stored
    assert named_image(stored, "field B.fits", out) == link  # again: the same link
    assert named_image(stored, None, out) == stored  # no name: the file itself
    (out / "taken.fits").write_text("someone else's")
    assert named_image(stored, "taken.fits", out) == stored  # the name is taken: the file itself


def test_every_python_runner_takes_the_image_name() -> None:
    args = ["--image", "/d/x.fits", "--out-dir", ".", "--image-name", "sky.fits"]
    for parse in (
        sep.parse_args,
        aegean.parse_args,
        pybdsf.parse_args,
        photutils.parse_args,
        sleep.parse_args,
    ):
        assert parse(args).image_name == "sky.fits"
    # it takes its arguments (an unknown one would raise SystemExit), then cannot read the notebook
    assert notebook.main([*args[:4], "--image-name", "nb.ipynb"]) == 2
