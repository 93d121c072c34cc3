from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cirasa.finders.imaging import BORDER_PX, TruthSource, synthetic_image, write_truth_csv


def test_header_shape_and_dtype(tmp_path: Path) -> None:
    path = tmp_path / "sky.fits"
    truth = synthetic_image(path, size=128, n_sources=5, seed=1, beam_arcsec=12.0, pixel_arcsec=3.0)
    with fits.open(path) as hdul:
        header, data = hdul[0].header, hdul[0].data
        assert data.shape == (128, 128)
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4
        assert header["CTYPE1"] == "RA---SIN" and header["CTYPE2"] == "DEC--SIN"
        assert (header["CRVAL1"], header["CRVAL2"]) == (150.0, -30.0)
        assert header["CDELT1"] == pytest.approx(-3.0 / 3600)
        assert header["CDELT2"] == pytest.approx(3.0 / 3600)
        assert header["BMAJ"] == header["BMIN"] == pytest.approx(12.0 / 3600)
        assert header["BPA"] == 0.0
        assert header["BUNIT"] == "JY/BEAM"
        assert header["FREQ"] == header["RESTFRQ"] == 1.4e9
        assert header["OBJECT"] == "CIRASA synthetic"
    assert len(truth) == 5


def test_truth_positions_fluxes_and_separation(tmp_path: Path) -> None:
    truth = synthetic_image(tmp_path / "sky.fits", size=256, n_sources=30, seed=2)
    xy = np.array([(s.x, s.y) for s in truth])
    assert xy.min() >= BORDER_PX and xy.max() <= 255 - BORDER_PX
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(truth), 1)].min() >= 3 * 15.0 / 4.0
    assert all(2e-3 <= s.peak_jy <= 0.2 and s.flux_jy == s.peak_jy for s in truth)
    assert [s.id for s in truth] == list(range(1, 31))


def test_sources_are_in_the_pixels(tmp_path: Path) -> None:
    path = tmp_path / "sky.fits"
    truth = synthetic_image(path, size=256, n_sources=10, seed=4)
    data = fits.getdata(path)
    for s in truth:
        assert data[round(s.y), round(s.x)] > 0.5 * s.peak_jy


def test_same_seed_same_image(tmp_path: Path) -> None:
    a = synthetic_image(tmp_path / "a.fits", size=128, n_sources=8, seed=7, extended_fraction=0.5)
    b = synthetic_image(tmp_path / "b.fits", size=128, n_sources=8, seed=7, extended_fraction=0.5)
    c = synthetic_image(tmp_path / "c.fits", size=128, n_sources=8, seed=8, extended_fraction=0.5)
    assert a == b and a != c
    assert np.array_equal(fits.getdata(tmp_path / "a.fits"), fits.getdata(tmp_path / "b.fits"))


def test_extended_sources_have_more_flux_than_peak(tmp_path: Path) -> None:
    truth = synthetic_image(tmp_path / "sky.fits", size=256, n_sources=10, seed=5, extended_fraction=1.0)
    assert all(s.flux_jy > s.peak_jy for s in truth)


@pytest.mark.parametrize(("size", "n_sources"), [(64, 100), (512, 1340), (16, 1)])
def test_impossible_placement_raises(tmp_path: Path, size: int, n_sources: int) -> None:
    with pytest.raises(ValueError, match=r"cannot place|too small"):
        synthetic_image(tmp_path / "x.fits", size=size, n_sources=n_sources)


def test_fast_enough(tmp_path: Path) -> None:
    start = time.perf_counter()
    synthetic_image(tmp_path / "sky.fits", size=512, n_sources=50)
    assert time.perf_counter() - start < 1.0


def test_truth_csv(tmp_path: Path) -> None:
    truth = [TruthSource(1, 10.5, 20.25, 150.0, -30.0, 0.01, 0.01)]
    path = write_truth_csv(tmp_path / "truth.csv", truth)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "x", "y", "ra", "dec", "peak_jy", "flux_jy"]
    assert float(rows[0]["y"]) == 20.25


def test_truth_csv_of_a_synthetic_image_says_its_noise(tmp_path: Path) -> None:
    """``cirasa compare`` then needs no --noise-ujy for its signal-to-noise cut."""
    from cirasa.finders.compare import load_table

    truth = synthetic_image(tmp_path / "sky.fits", size=128, n_sources=3, seed=1, noise_jy=30e-6)
    path = write_truth_csv(tmp_path / "truth.csv", truth)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "x", "y", "ra", "dec", "peak_jy", "flux_jy", "noise_jy"]
    assert {float(r["noise_jy"]) for r in rows} == {30e-6}
    assert load_table(path).noise_jy == 30e-6
