from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from pydantic import ValidationError

from cirasa.finders.catalog import (
    CATALOG_COLUMNS,
    Catalog,
    CatalogSource,
    read_catalog_json,
    write_preview_png,
    write_products,
)
from cirasa.finders.imaging import synthetic_header


def _source(i: int, **extra: object) -> CatalogSource:
    fields: dict[str, object] = {
        "source_id": f"S{i}",
        "component_id": f"S{i}c1",
        "island_id": i,
        "ra_deg": 150.0 + i * 0.01,
        "dec_deg": -30.0,
        "x_pix": 10.0 * i,
        "y_pix": 20.0,
        "peak_flux_jy": 0.01,
        "int_flux_jy": 0.012,
        "maj_arcsec": 16.0,
        "min_arcsec": 15.0,
        "pa_deg": 30.0,
        "snr": 500.0,
        "finder": "test",
    }
    fields.update(extra)
    return CatalogSource.model_validate(fields)


def _catalog(n: int = 3) -> Catalog:
    sources = [_source(i) for i in range(1, n + 1)]
    sources.append(_source(n + 1, maj_arcsec=None, min_arcsec=None, pa_deg=None))  # a circle
    sources.append(_source(n + 2, ra_deg=None, dec_deg=None))  # pixel position only
    return Catalog(
        finder="test",
        finder_version="1.0",
        options={"seedthr": 5.0},
        image="/data/u/sky.fits",
        sources=sources,
    )


def test_image_is_a_file_name_only() -> None:
    assert _catalog().image == "sky.fits"
    assert Catalog(finder="f", finder_version="1", image=r"C:\x\y.fits").image == "y.fits"


def test_non_finite_optional_values_become_none() -> None:
    source = _source(1, snr=float("nan"), int_flux_jy=np.float32("inf"), peak_flux_jy=np.float64(0.5))
    assert source.snr is None and source.int_flux_jy is None and source.peak_flux_jy == 0.5
    with pytest.raises(ValidationError):
        _source(1, x_pix=math.nan)


def test_json_round_trip(tmp_path: Path) -> None:
    catalog = _catalog()
    paths = write_products(catalog, tmp_path, "sky")
    assert paths["json"].name == "catalog-sky.json"
    assert read_catalog_json(paths["json"]) == catalog


def test_csv_has_the_standard_columns(tmp_path: Path) -> None:
    paths = write_products(_catalog(), tmp_path, "sky")
    with paths["csv"].open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert paths["csv"].name == "catalog-sky.csv"
    assert tuple(reader.fieldnames or ()) == CATALOG_COLUMNS
    for column in ("source_id", "ra_deg", "dec_deg", "peak_flux_jy", "int_flux_jy", "maj_arcsec", "finder"):
        assert column in CATALOG_COLUMNS
    assert len(rows) == 5
    assert rows[3]["maj_arcsec"] == ""  # None is an empty cell


def test_votable_readable_by_astropy(tmp_path: Path) -> None:
    catalog = _catalog()
    paths = write_products(catalog, tmp_path, "sky")
    assert paths["votable"].name == "catalog-sky.vot"
    table = Table.read(paths["votable"], format="votable")
    assert len(table) == len(catalog.sources)
    assert set(CATALOG_COLUMNS) <= set(table.colnames)
    assert str(table["ra_deg"].unit) == "deg"
    missing = table["maj_arcsec"][3]  # None was written as NaN, which astropy reads back masked
    assert missing is np.ma.masked or math.isnan(missing)


def test_empty_catalog_products(tmp_path: Path) -> None:
    catalog = Catalog(finder="test", finder_version="1.0", image="empty.fits")
    paths = write_products(catalog, tmp_path, "empty")
    assert len(Table.read(paths["votable"], format="votable")) == 0
    assert read_catalog_json(paths["json"]).sources == []


def test_region_file_has_one_line_per_source(tmp_path: Path) -> None:
    catalog = _catalog()
    paths = write_products(catalog, tmp_path, "sky")
    assert paths["ds9"].name == "ds9-sky.reg"
    lines = paths["ds9"].read_text().splitlines()
    assert lines[0].startswith("# Region file format: DS9")
    shapes = [line for line in lines if line.startswith(("ellipse(", "circle(", "image;"))]
    assert len(shapes) == len(catalog.sources)
    # semi-axes, DS9 angle = PA + 90
    assert shapes[0].startswith('ellipse(150.0100000,-30.0000000,8.000",7.500",120.000)')
    assert shapes[3].startswith("circle(")
    assert shapes[4].startswith("image;circle(")


def test_bad_base_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base name"):
        write_products(_catalog(), tmp_path, "../escape")


def test_preview_png(tmp_path: Path) -> None:
    header = synthetic_header(64, 15.0, 4.0)
    data = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    data[:4, :4] = np.nan
    path = write_preview_png(data, header, _catalog(), tmp_path / "plot_sky.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_wcs = write_preview_png(data, fits.Header(), _catalog(), tmp_path / "plot_nowcs.png")
    assert no_wcs.stat().st_size > 0
