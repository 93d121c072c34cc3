"""App option schemas: strict types, bounds, enums, unknown options reported, argument lists, no shell."""

from __future__ import annotations

import sys

import pytest

from cirasa.finders.registry import APPS, Option, OptionError

SEP = APPS["sep"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5.0), (5.5, 5.5), (1e4, 1e4)],
)
def test_float_option_accepts_numbers(value: float, expected: float) -> None:
    assert SEP.validate({"seedthr": value}).values["seedthr"] == expected


@pytest.mark.parametrize("value", [True, "5", None, [5], float("nan"), float("inf"), 0.1, 1e5])
def test_float_option_rejects_the_rest(value: object) -> None:
    with pytest.raises(OptionError, match="seedthr"):
        SEP.validate({"seedthr": value})


def test_int_option_has_no_silent_coercion() -> None:
    assert SEP.validate({"minarea": 7}).values["minarea"] == 7
    assert SEP.validate({"minarea": 7.0}).values["minarea"] == 7
    for bad in (7.5, True, "7", 0, 10**6):
        with pytest.raises(OptionError, match="minarea"):
            SEP.validate({"minarea": bad})


def test_flags_need_booleans() -> None:
    assert SEP.validate({"no-clean": True}).values == {"no-clean": True}
    with pytest.raises(OptionError, match="no-clean"):
        SEP.validate({"no-clean": 1})


def test_enum_and_string_options() -> None:
    opt = Option("mode", "str", "a mode", "a", allowed=("a", "b"))
    assert opt.validate("b") == "b"
    with pytest.raises(OptionError, match="mode"):
        opt.validate("A")
    assert opt.describe()["enum"] is True and opt.describe()["allowed_values"] == ["a", "b"]


def test_unknown_options_are_reported() -> None:
    result = SEP.validate({"seedthr": 4, "no-mpi": True, "fitsources": True})
    assert result.values == {"seedthr": 4.0}
    assert result.ignored == ["fitsources", "no-mpi"]


def test_argv_is_a_list_in_declaration_order() -> None:
    argv = SEP.build_argv({"no-clean": True, "seedthr": 4.0, "no-preview": False}, "/data/u/x.fits")
    assert argv[:3] == [sys.executable, "-m", "cirasa.finders.runners.sep"]
    assert argv[3:] == ["--seedthr=4.0", "--no-clean", "--image", "/data/u/x.fits", "--out-dir", "."]
    named = SEP.build_argv({}, "/data/u/3f2a.fits", "field B.fits")
    assert named[3:] == ["--image", "/data/u/3f2a.fits", "--image-name", "field B.fits", "--out-dir", "."]


def test_describe_uses_caesar_keys() -> None:
    for app in APPS.values():
        for desc in app.describe().values():
            assert {"mandatory", "type", "description", "advanced", "category", "subcategory", "enum"} <= set(
                desc
            )
            assert desc["type"] in ("none", "int", "float", "str")


def test_container_apps_build_caesar_rest_style_arguments() -> None:
    cutex = APPS["cutex"]
    args = cutex.container_args({"no-logredir": True, "seedthr": 4.0}, "/data/u/x.fits")
    assert args == [
        "--run",
        "--save-summaryplot",
        "--save-catalog-to-json",
        "--seedthr=4.0",
        "--no-logredir",
        "--inputfile=/data/u/x.fits",
    ]
    assert APPS["mrcnn"].container_args({}, "/d/x.fits")[-1] == "--image=/d/x.fits"
