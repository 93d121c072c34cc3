from __future__ import annotations

from pathlib import Path

import pytest

from cirasa.common.paths import job_dir_for, resolve_under, safe_user


def test_safe_user_maps_like_caesar_rest_and_strips_the_rest() -> None:
    assert safe_user("jane.doe@inaf.it") == "jane_doe_inaf_it"
    assert safe_user("../../etc") == "______etc"
    assert safe_user("") == "anonymous"
    assert str(job_dir_for("a/b", "123")) == "a_b/job_123"


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "", "."])
def test_resolve_under_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        resolve_under(tmp_path, bad)


def test_resolve_under_refuses_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(ValueError):
        resolve_under(tmp_path, "link/passwd")
    assert resolve_under(tmp_path, "u/f.fits") == tmp_path.resolve() / "u" / "f.fits"
