from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cirasa.common.paths import job_dir_for, resolve_under, safe_user


def test_safe_user_is_injective_and_safe() -> None:
    """Issue 9: names that caesar-rest's mapping made equal stay apart, and nothing unsafe is left."""
    names = ["alice@example.org", "alice.example@org", "alice_example_org", "alice+40example+2Eorg"]
    assert len({safe_user(n) for n in names}) == len(names)
    assert safe_user("jane.doe@inaf.it") == "jane+2Edoe+40inaf+2Eit"
    assert safe_user("../../etc") == "+2E+2E+2F+2E+2E+2Fetc"
    assert safe_user("") == "anonymous"


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_safe_user_never_maps_two_users_to_one_directory(a: str, b: str) -> None:
    assume(a != b)
    assert safe_user(a) != safe_user(b)
    for name in (safe_user(a), safe_user(b)):
        assert len(name) <= 129 and "/" not in name and "%" not in name and name not in (".", "..")


def test_job_dirs_follow_caesar_rests_layout() -> None:
    assert str(job_dir_for("a/b", "123")) == "a+2Fb/job_123"


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "", "."])
def test_resolve_under_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        resolve_under(tmp_path, bad)


def test_resolve_under_refuses_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(ValueError):
        resolve_under(tmp_path, "link/passwd")
    assert resolve_under(tmp_path, "u/f.fits") == tmp_path.resolve() / "u" / "f.fits"
