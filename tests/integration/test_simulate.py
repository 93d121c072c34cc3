"""The CIRASA test-campaign sky simulator, and sep scored on it through ``compare``."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from typer.testing import CliRunner

from cirasa.cli.main import app
from cirasa.finders.catalog import pixel_angle_to_pa
from cirasa.finders.compare import compare, load_table
from cirasa.finders.imaging import BORDER_PX, FWHM_PER_SIGMA
from cirasa.finders.simulation import TRUTH_COLUMNS, SkySource, simulate_sky, truncated_exponential

NOISE = 20e-6
BEAM_PX = 15.0 / 4.0


def _clear_of_sources(shape: tuple[int, ...], truth: list[SkySource]) -> np.ndarray:
    """Pixels farther than 12 px from any point source and 32 px from any extended one."""
    clear = np.ones(shape, dtype=bool)
    for s in truth:
        r = 12 if s.type == "point" else 32
        x, y = round(s.x), round(s.y)
        clear[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = False
    return clear


def test_header_and_pixels(tmp_path: Path) -> None:
    path = tmp_path / "sky.fits"
    simulate_sky(path, size=300, density_per_deg2=250, seed=1)
    with fits.open(path) as hdul:
        header, data = hdul[0].header, hdul[0].data
    assert data.shape == (300, 300) and data.dtype.kind == "f" and data.dtype.itemsize == 4
    assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---SIN", "DEC--SIN")
    assert (header["CRVAL1"], header["CRVAL2"]) == (150.0, -30.0)
    assert header["CDELT1"] == pytest.approx(-4.0 / 3600) and header["CDELT2"] == pytest.approx(4.0 / 3600)
    assert header["BMAJ"] == header["BMIN"] == pytest.approx(15.0 / 3600) and header["BPA"] == 0.0
    assert header["FREQ"] == header["RESTFRQ"] == 1.4e9
    assert header["BUNIT"] == "JY/BEAM"
    assert np.isfinite(data).all()


@pytest.mark.parametrize(
    ("size", "density", "expected"), [(900, 2500, 2500), (450, 2500, 625), (900, 250, 250)]
)
def test_counts_positions_and_extended_fraction(
    tmp_path: Path, size: int, density: float, expected: int
) -> None:
    truth = simulate_sky(tmp_path / "sky.fits", size=size, density_per_deg2=density, seed=2)
    assert len(truth) == expected
    assert [s.id for s in truth] == list(range(1, expected + 1))
    assert sum(s.type == "extended" for s in truth) == round(0.1 * expected)
    xy = np.array([(s.x, s.y) for s in truth])
    assert xy.min() >= BORDER_PX and xy.max() <= size - 1 - BORDER_PX
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    assert math.sqrt(d2.min()) >= 2 * BEAM_PX
    wcs = WCS(fits.getheader(tmp_path / "sky.fits"))
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    assert np.allclose(ra, [s.ra for s in truth]) and np.allclose(dec, [s.dec for s in truth])


def test_flux_law_and_shapes(tmp_path: Path) -> None:
    truth = simulate_sky(tmp_path / "sky.fits", size=1800, density_per_deg2=2500, seed=3)
    point = [s for s in truth if s.type == "point"]
    extended = [s for s in truth if s.type == "extended"]
    assert all(50e-6 <= s.flux_jy <= 1.0 and s.peak_jy == s.flux_jy for s in point)
    assert all(s.maj_arcsec == s.min_arcsec == 15.0 for s in point)
    assert all(5e-6 <= s.flux_jy <= 1e-3 for s in extended)
    # p(S) ~ exp(-1.6 S) on [50 uJy, 1 Jy]: mean a + 1/lambda - (b - a) / (exp(lambda (b - a)) - 1)
    lam, a, b = 1.6, 50e-6, 1.0
    mean = a + 1 / lam - (b - a) / math.expm1(lam * (b - a))
    fluxes = np.array([s.flux_jy for s in point])
    assert abs(fluxes.mean() - mean) < 4 * fluxes.std() / math.sqrt(len(fluxes))
    assert np.median(fluxes) == pytest.approx(0.32, abs=0.03)  # finder-anchors.md §1
    for s in extended:
        intrinsic_maj = math.sqrt(s.maj_arcsec**2 - 15.0**2) / 15.0
        intrinsic_min = math.sqrt(s.min_arcsec**2 - 15.0**2) / 15.0
        assert 1.0 - 1e-9 <= intrinsic_maj <= 3.0 + 1e-9
        assert 0.4 - 1e-9 <= intrinsic_min / intrinsic_maj <= 1.0 + 1e-9
        assert 0.0 <= s.pa_deg < 180.0
        assert s.peak_jy == pytest.approx(s.flux_jy * 15.0**2 / (s.maj_arcsec * s.min_arcsec))


def test_truncated_exponential_bounds() -> None:
    rng = np.random.default_rng(0)
    values = truncated_exponential(rng, 100_000, 1 / 1.6, 5e-6, 1e-3)
    assert values.min() >= 5e-6 and values.max() <= 1e-3
    assert values.mean() == pytest.approx((5e-6 + 1e-3) / 2, rel=0.01)  # nearly flat over 1 mJy


def test_extended_sources_are_drawn_as_catalogued(tmp_path: Path) -> None:
    """Noiseless, isolated extended sources: their moments give back FWHM, position angle and flux."""
    path = tmp_path / "sky.fits"
    truth = simulate_sky(
        path,
        size=600,
        density_per_deg2=100,
        noise_jy=0.0,
        extended_fraction=1.0,
        seed=4,
        min_separation_beams=12.0,
    )
    data = fits.getdata(path).astype(np.float64)
    wcs = WCS(fits.getheader(path))
    beam_area_px = 2 * math.pi * (BEAM_PX / FWHM_PER_SIGMA) ** 2
    checked = 0
    for s in truth:
        r = 22
        x0, y0 = round(s.x), round(s.y)
        if min(x0, y0) < r or max(x0, y0) > 599 - r:
            continue
        cut = data[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        yy, xx = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        total = cut.sum()
        dx, dy = xx - s.x, yy - s.y
        cov = (
            np.array(
                [
                    [(cut * dx * dx).sum(), (cut * dx * dy).sum()],
                    [(cut * dx * dy).sum(), (cut * dy * dy).sum()],
                ]
            )
            / total
        )
        eigval, eigvec = np.linalg.eigh(cov)
        fwhm = FWHM_PER_SIGMA * np.sqrt(eigval[::-1]) * 4.0
        angle = math.atan2(eigvec[1, 1], eigvec[0, 1])
        pa = float(pixel_angle_to_pa(wcs, np.array([s.x]), np.array([s.y]), np.array([angle]))[0])
        assert fwhm[0] == pytest.approx(s.maj_arcsec, rel=0.03)
        assert fwhm[1] == pytest.approx(s.min_arcsec, rel=0.03)
        if s.maj_arcsec / s.min_arcsec > 1.1:
            assert min(abs(pa - s.pa_deg), 180 - abs(pa - s.pa_deg)) < 3.0
        assert total / beam_area_px == pytest.approx(s.flux_jy, rel=0.02)
        assert cut.max() == pytest.approx(s.peak_jy, rel=0.06)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("correlated", [True, False])
def test_noise_rms_in_an_empty_area(tmp_path: Path, correlated: bool) -> None:
    path = tmp_path / "sky.fits"
    truth = simulate_sky(path, size=900, density_per_deg2=250, seed=5, correlated_noise=correlated)
    data = fits.getdata(path)
    clear = _clear_of_sources(data.shape, truth)
    assert clear.mean() > 0.5
    assert float(data[clear].std()) == pytest.approx(NOISE, rel=0.10)
    pairs = clear[:, :-1] & clear[:, 1:]
    lag1 = float(np.corrcoef(data[:, :-1][pairs], data[:, 1:][pairs])[0, 1])
    if correlated:
        assert lag1 > 0.8  # the beam spans ~3.75 pixels
    else:
        assert abs(lag1) < 0.05


def test_reproducible_by_seed(tmp_path: Path) -> None:
    a = simulate_sky(tmp_path / "a.fits", size=450, seed=7)
    b = simulate_sky(tmp_path / "b.fits", size=450, seed=7)
    c = simulate_sky(tmp_path / "c.fits", size=450, seed=8)
    assert a == b and a != c
    assert np.array_equal(fits.getdata(tmp_path / "a.fits"), fits.getdata(tmp_path / "b.fits"))
    assert not np.array_equal(fits.getdata(tmp_path / "a.fits"), fits.getdata(tmp_path / "c.fits"))


def test_too_dense_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot place"):
        simulate_sky(tmp_path / "x.fits", size=100, density_per_deg2=1e6)
    with pytest.raises(ValueError, match="extended_fraction"):
        simulate_sky(tmp_path / "x.fits", size=100, extended_fraction=1.5)


def test_cli_simulate_with_density(tmp_path: Path) -> None:
    out, truth = tmp_path / "sky.fits", tmp_path / "sky.truth.csv"
    args = ["simulate", str(out), "--size", "450", "--density", "2500", "--truth", str(truth)]
    result = CliRunner().invoke(
        app, [*args, "--white-noise", "--noise-ujy", "30", "--extended-fraction", "0.2"]
    )
    assert result.exit_code == 0, result.output
    with truth.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TRUTH_COLUMNS
    assert len(rows) == 625 and sum(r["type"] == "extended" for r in rows) == 125
    assert {float(r["noise_jy"]) for r in rows} == {30e-6}
    assert fits.getdata(out).shape == (450, 450)
    # the older options still work, and cannot be mixed with --density
    assert CliRunner().invoke(app, ["simulate", str(out), "--size", "128", "--sources", "5"]).exit_code == 0
    assert (
        CliRunner().invoke(app, ["simulate", str(out), "--sources", "5", "--density", "250"]).exit_code == 2
    )


@pytest.mark.slow
def test_sep_on_the_campaign_map(tmp_path: Path) -> None:
    """finder-anchors.md §3: sep recovers ~97% of the 5-sigma point sources at ~100% reliability."""
    image, truth = tmp_path / "sky.fits", tmp_path / "sky.truth.csv"
    simulate_sky(image, size=900, density_per_deg2=2500, seed=0, truth_path=truth)
    run = subprocess.run(
        [sys.executable, "-m", "cirasa.finders.runners.sep", "--image", str(image), "--out-dir", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = compare(load_table(tmp_path / "out" / "catalog-sky.json"), load_table(truth))
    print(result.as_dict())
    assert result.n_targets > 2000
    assert result.completeness is not None and result.completeness >= 0.90
    assert result.reliability is not None and result.reliability >= 0.95
    assert result.median_offset_arcsec is not None and result.median_offset_arcsec < 0.5
    assert result.median_peak_ratio == pytest.approx(0.969, abs=0.03)  # brightest pixel of a 3.75 px beam


def test_cli_simulate_realistic(tmp_path: Path) -> None:
    out, truth = tmp_path / "sky.fits", tmp_path / "sky.truth.csv"
    args = ["simulate", str(out), "--realistic", "--size", "400", "--truth", str(truth), "--seed", "3"]
    extra = ["--min-snr", "4", "--counts-slope", "2", "--diffuse-ujy", "50", "--extended-fraction", "0.2"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    with truth.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0])[: len(TRUTH_COLUMNS)] == TRUTH_COLUMNS and tuple(rows[0])[-2:] == (
        "snr",
        "extent_beams",
    )
    assert len(rows) == round(2500 * (400 * 4 / 3600) ** 2)  # the default density
    assert sum(r["type"] == "extended" for r in rows) == round(0.2 * len(rows))
    assert min(float(r["snr"]) for r in rows) >= 4.0 - 1e-9
    assert all(2.0 <= float(r["extent_beams"]) <= 4.0 for r in rows if r["type"] == "extended")
    assert fits.getdata(out).shape == (400, 400)
    assert "diffuse 5e-05 Jy/beam" in str(fits.getheader(out)["HISTORY"])
    # bad combinations: a clear message and exit code 2
    only = CliRunner().invoke(app, ["simulate", str(out), "--size", "128", "--min-snr", "4"])
    assert only.exit_code == 2 and "--min-snr" in _flat(only.output) and "--realistic" in _flat(only.output)
    both = CliRunner().invoke(app, ["simulate", str(out), "--realistic", "--sources", "5"])
    assert both.exit_code == 2 and "either --sources or --realistic" in _flat(both.output)
    silent = CliRunner().invoke(app, ["simulate", str(out), "--realistic", "--noise-ujy", "0"])
    assert silent.exit_code == 2 and "--noise-ujy > 0" in _flat(silent.output)
    too_faint = CliRunner().invoke(app, ["simulate", str(out), "--realistic", "--max-flux-jy", "1e-5"])
    assert too_faint.exit_code == 2 and "max_flux_jy" in _flat(too_faint.output)


def _flat(text: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(text.split())
