"""caesar-rest's exact option schemas for the container apps: caesar (156 options), cutex, mrcnn."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from cirasa.finders.registry import APPS, OptionError

CAESAR = APPS["caesar"]
FLAG_KEYS = {"mandatory", "type", "description", "advanced", "category", "subcategory", "enum"}
VALUE_KEYS = FLAG_KEYS | {"default", "min", "max"}
ENUM_KEYS = FLAG_KEYS | {"default", "allowed_values"}


def _kind(desc: dict[str, Any]) -> str:
    return "enum" if desc["enum"] else desc["type"]


def test_describe_lists_156_options_with_caesar_rest_keys() -> None:
    described = CAESAR.describe()
    assert len(described) == 156
    for name, desc in described.items():
        assert desc["description"], name
        assert desc["mandatory"] is False
        assert desc["advanced"] in (0, 1)
        if desc["type"] == "none":
            assert set(desc) == FLAG_KEYS and desc["enum"] is False, name
        elif desc["enum"]:
            assert set(desc) == ENUM_KEYS and desc["type"] == "str", name
            assert desc["default"] in desc["allowed_values"], name
        else:
            assert set(desc) == VALUE_KEYS and desc["type"] in ("int", "float"), name
            assert desc["min"] <= desc["default"] <= desc["max"], name


def test_counts_by_kind_advanced_and_category() -> None:
    described = CAESAR.describe()
    assert Counter(_kind(d) for d in described.values()) == {"none": 61, "float": 48, "int": 35, "enum": 12}
    assert sum(d["advanced"] for d in described.values()) == 50
    by_category = Counter((d["category"], d["subcategory"]) for d in described.values())
    assert by_category == {
        ("OUTPUT", ""): 10,
        ("IMGREAD", ""): 5,
        ("IMGSTATS", ""): 1,
        ("IMGBKG", ""): 12,
        ("COMPACT-SOURCES", ""): 6,
        ("COMPACT-SOURCES", "SELECTION"): 14,
        ("COMPACT-SOURCES", "NESTED-SOURCES"): 12,
        ("COMPACT-SOURCES", "FITTING"): 44,
        ("IMGRES", ""): 8,
        ("IMGSMOOTH", ""): 4,
        ("EXTENDED-SOURCES", ""): 3,
        ("EXTENDED-SOURCES", "SALIENCY"): 12,
        ("EXTENDED-SOURCES", "ACTIVE-CONTOUR"): 13,
        ("EXTENDED-SOURCES", "WAVELET-TRANSFORM"): 2,
        ("RUN", ""): 10,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mergethr", {"type": "float", "default": 2.6, "min": 0, "max": 1e4, "advanced": 0}),
        ("fit-maxniters", {"type": "int", "default": 10000, "min": 0, "max": 1e6, "advanced": 1}),
        ("fit-peakmultiplicitythr", {"type": "int", "default": 1, "min": -1, "max": 100}),
        ("bkgbox", {"type": "float", "default": 20, "min": 0.01, "max": 1000, "category": "IMGBKG"}),
        ("sp-beta", {"type": "float", "default": 1, "min": 1e-10, "max": 1e10, "subcategory": "SALIENCY"}),
        ("nthreads", {"type": "int", "default": 1, "min": -1, "max": 1000, "category": "RUN"}),
        ("tilesize", {"type": "int", "default": 0.0, "min": 0.0, "max": 1e7}),
        ("fit-minimizer", {"default": "Minuit2", "allowed_values": ["Minuit", "Minuit2"], "advanced": 1}),
        ("regionwcs", {"default": "J2000", "allowed_values": ["J2000", "B1950", "GALACTIC"], "advanced": 1}),
        ("no-nestedsearch", {"type": "none", "subcategory": "NESTED-SOURCES", "advanced": 0}),
        ("fit-useellipsecuts", {"type": "none", "subcategory": "FITTING", "advanced": 1}),
    ],
)
def test_values_as_caesar_rest_declares_them(name: str, expected: dict[str, Any]) -> None:
    desc = CAESAR.describe()[name]
    assert {k: desc[k] for k in expected} == expected


def test_tilesize_keeps_its_float_default_but_takes_integers() -> None:
    desc = CAESAR.describe()["tilesize"]
    assert isinstance(desc["default"], float) and desc["type"] == "int"
    assert CAESAR.validate({"tilesize": 512.0}).values == {"tilesize": 512}
    assert CAESAR.option_args({"tilesize": 512}) == ["--tilesize=512"]
    with pytest.raises(OptionError, match="tilesize"):
        CAESAR.validate({"tilesize": 512.5})


def test_caesar_rest_example_argument_list() -> None:
    """research/caesar-rest.md §4.1: declaration order, not request order; flags only when true."""
    options = CAESAR.validate(
        {
            "no-mpi": True,
            "no-logredir": True,
            "no-extendedsearch": True,
            "fitsources": True,
            "tilesplit": False,
        }
    ).values
    assert CAESAR.container_args(options, "/data/anonymous/u.fits") == [
        "--run",
        "--save-summaryplot",
        "--save-regions",
        "--save-catalog-to-json",
        "--fitsources",
        "--no-extendedsearch",
        "--no-logredir",
        "--no-mpi",
        "--inputfile=/data/anonymous/u.fits",
    ]
    assert CAESAR.runner == "container" and CAESAR.image == "sriggi/caesar-job:latest"


def test_enum_values_become_codes_on_the_command_line() -> None:
    request = {
        "regionwcs": "GALACTIC",
        "bkgestimator": "Median",
        "blobmaskmethod": "GausLaplacian",
        "fit-minimizer": "Minuit",
        "fit-minimizeralgo": "migrad",
        "res-removedsourcetype": "ALL",
        "res-pssubtractionmethod": "FITMODEL",
        "smoothfilter": "GAUSSIAN",
        "extsfinder": "WT-THRESH",
        "activecontour": "LRAC",
        "ac-levelset": "SALIENCY",
        "loglevel": "DEBUG",
    }
    validated = CAESAR.validate(request)
    assert validated.values == request  # the job keeps the names; only the command line has codes
    assert CAESAR.option_args(validated.values) == [
        "--regionwcs=2",
        "--bkgestimator=2",
        "--blobmaskmethod=1",
        "--fit-minimizer=Minuit",
        "--fit-minimizeralgo=migrad",
        "--res-removedsourcetype=-1",
        "--res-pssubtractionmethod=2",
        "--smoothfilter=1",
        "--extsfinder=1",
        "--activecontour=2",
        "--ac-levelset=3",
        "--loglevel=DEBUG",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("seedthr", "5"),
        ("seedthr", True),
        ("seedthr", 1e5),
        ("npixmin", 2.7),
        ("npixmin", True),
        ("nthreads", -2),
        ("tilestep", 0.0),
        ("bkgestimator", "median"),
        ("bkgestimator", 2),
        ("loglevel", "TRACE"),
        ("fitsources", 1),
        ("fitsources", "true"),
    ],
)
def test_bad_values_name_the_option(name: str, value: object) -> None:
    with pytest.raises(OptionError, match=name):
        CAESAR.validate({name: value})


def test_unknown_options_are_reported_not_passed() -> None:
    result = CAESAR.validate({"seedthr": 4, "save-regions": True, "inputfile": "/etc/passwd"})
    assert result.values == {"seedthr": 4.0}
    assert result.ignored == ["inputfile", "save-regions"]


def test_cutex_schema() -> None:
    cutex = APPS["cutex"]
    described = cutex.describe()
    assert list(described) == ["seedthr", "npixmin", "npixpsf", "psflimmin", "psflimmax", "no-logredir"]
    assert {k: described["npixmin"][k] for k in ("type", "default", "min", "max")} == {
        "type": "int",
        "default": 4,
        "min": 1,
        "max": 1e4,
    }
    assert {
        k: described["psflimmax"][k] for k in ("type", "default", "min", "max", "category", "subcategory")
    } == {
        "type": "float",
        "default": 2.0,
        "min": 1e-4,
        "max": 100,
        "category": "COMPACT-SOURCES",
        "subcategory": "FITTING",
    }
    assert described["no-logredir"]["category"] == "RUN" and described["no-logredir"]["type"] == "none"
    assert not any(d["advanced"] for d in described.values())
    assert cutex.container_args({"seedthr": 4.0, "no-logredir": True}, "/d/x.fits") == [
        "--run",
        "--save-summaryplot",
        "--save-catalog-to-json",
        "--seedthr=4.0",
        "--no-logredir",
        "--inputfile=/d/x.fits",
    ]
    assert cutex.image == "sriggi/cutex-job:latest"


def test_mrcnn_schema() -> None:
    mrcnn = APPS["mrcnn"]
    described = mrcnn.describe()
    assert list(described) == ["scoreThr", "iouThr"]
    assert {k: described["scoreThr"][k] for k in ("type", "default", "min", "max", "category")} == {
        "type": "float",
        "default": 0.7,
        "min": 0,
        "max": 1,
        "category": "DETECT",
    }
    assert described["iouThr"]["default"] == 0.6
    args = mrcnn.container_args({"scoreThr": 0.5}, "/d/x.fits")
    assert args[0] == "--runmode=detect" and args[1].startswith("--weights=")
    assert args[2:] == ["--scoreThr=0.5", "--image=/d/x.fits"]
    with pytest.raises(OptionError, match="iouThr"):
        mrcnn.validate({"iouThr": 1.5})
