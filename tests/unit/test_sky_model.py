"""The realistic crowded sky of issue 15: power-law counts, SNR floor, extended sources, noise, diffuse."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cirasa.finders.compare import load_table
from cirasa.finders.simulation import TRUTH_COLUMNS
from cirasa.finders.sky_model import (
    REALISTIC_COLUMNS,
    RealisticSky,
    RealisticSource,
    power_law,
    simulate_realistic_sky,
)

NOISE = 20e-6


@pytest.fixture(scope="module")
def issue_map(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[RealisticSource]]:
    """Issue 15's map (the defaults), made once for the module."""
    folder = tmp_path_factory.mktemp("sky")
    image, truth_csv = folder / "sky.fits", folder / "sky.truth.csv"
    truth = simulate_realistic_sky(image, seed=3, truth_path=truth_csv)
    return image, truth_csv, truth


def test_counts_follow_the_slope(issue_map: tuple[Path, Path, list[RealisticSource]]) -> None:
    """dN/dS ~ S^-1.6 means N(>S) ~ S^-0.6: the log-log cumulative counts of the peaks have slope -0.6."""
    _, _, truth = issue_map
    assert len(truth) == round(2500 * (800 * 4 / 3600) ** 2) == 1975
    snr = np.sort([s.snr for s in truth])[::-1]
    n_above = np.arange(1, len(snr) + 1)
    keep = (snr >= 3.0) & (snr <= 300.0)
    slope = np.polyfit(np.log(snr[keep]), np.log(n_above[keep]), 1)[0]
    assert slope == pytest.approx(-0.6, abs=0.06)
    fluxes = np.array([s.flux_jy for s in truth if s.type == "point"])  # the integrated-flux law itself
    hill = 1.0 + len(fluxes) / np.log(fluxes / (3 * NOISE)).sum()
    assert hill == pytest.approx(1.6, abs=0.06)


def test_another_slope_is_followed_too(tmp_path: Path) -> None:
    truth = simulate_realistic_sky(tmp_path / "s.fits", RealisticSky(size=600, counts_slope=2.5), seed=1)
    snr = np.array([s.snr for s in truth])
    hill = 1.0 + len(snr) / np.log(snr / 3.0).sum()
    assert hill == pytest.approx(2.5, abs=0.15)


def test_every_source_is_above_the_snr_floor(issue_map: tuple[Path, Path, list[RealisticSource]]) -> None:
    _, _, truth = issue_map
    snr = np.array([s.snr for s in truth])
    assert snr.min() >= 3.0 - 1e-9
    assert snr.min() < 3.05  # the floor is where the counts start, not a loose lower bound
    assert all(s.snr == pytest.approx(s.peak_jy / NOISE) for s in truth)
    assert all(s.flux_jy <= 1.0 for s in truth)
    deeper = simulate_realistic_sky(
        Path(issue_map[0].parent / "deep.fits"), RealisticSky(min_snr=8.0), seed=3
    )
    assert min(s.snr for s in deeper) >= 8.0 - 1e-9


def test_extended_fraction_and_extents(issue_map: tuple[Path, Path, list[RealisticSource]]) -> None:
    _, _, truth = issue_map
    extended = [s for s in truth if s.type == "extended"]
    assert len(extended) == round(0.1 * len(truth))
    extents = np.array([s.extent_beams for s in extended])
    assert extents.min() >= 2.0 and extents.max() <= 4.0
    assert extents.max() - extents.min() > 1.5  # spread over the range
    for s in extended:
        assert s.maj_arcsec == pytest.approx(15.0 * math.hypot(s.extent_beams, 1.0))
        assert s.peak_jy == pytest.approx(s.flux_jy * 15.0**2 / (s.maj_arcsec * s.min_arcsec))
    assert all(s.extent_beams == 0.0 and s.maj_arcsec == 15.0 for s in truth if s.type == "point")


def test_noise_rms_off_source(tmp_path: Path) -> None:
    sky = RealisticSky(density_per_deg2=250)
    truth = simulate_realistic_sky(tmp_path / "s.fits", sky, seed=5)
    data = fits.getdata(tmp_path / "s.fits")
    clear = np.ones(data.shape, dtype=bool)
    for s in truth:
        r = 12 if s.type == "point" else 40
        x, y = round(s.x), round(s.y)
        clear[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = False
    assert clear.mean() > 0.5
    assert float(data[clear].std()) == pytest.approx(NOISE, rel=0.08)


def test_diffuse_emission_only_when_asked(tmp_path: Path) -> None:
    base = RealisticSky(size=400)
    simulate_realistic_sky(tmp_path / "off.fits", base, seed=2)
    simulate_realistic_sky(tmp_path / "on.fits", RealisticSky(size=400, diffuse_jy=100e-6), seed=2)
    off, on = fits.getdata(tmp_path / "off.fits"), fits.getdata(tmp_path / "on.fits")
    diffuse = on.astype(np.float64) - off
    assert float(diffuse.std()) == pytest.approx(100e-6, rel=0.01)
    assert abs(float(diffuse.mean())) < 1e-6
    # smooth on the scale of 20 beams: neighbouring pixels nearly equal
    lag1 = float(np.corrcoef(diffuse[:, :-1].ravel(), diffuse[:, 1:].ravel())[0, 1])
    assert lag1 > 0.99

    def block_medians(data: np.ndarray) -> np.ndarray:
        return np.array(
            [np.median(data[i : i + 50, j : j + 50]) for i in range(0, 400, 50) for j in range(0, 400, 50)]
        )

    assert float(block_medians(off).std()) < 10e-6  # no large-scale structure without diffuse emission
    assert float(block_medians(on).std()) > 40e-6


def test_truth_csv_round_trips_through_compare(issue_map: tuple[Path, Path, list[RealisticSource]]) -> None:
    _, truth_csv, truth = issue_map
    with truth_csv.open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == REALISTIC_COLUMNS
    assert REALISTIC_COLUMNS[: len(TRUTH_COLUMNS)] == TRUTH_COLUMNS
    assert [float(r["snr"]) for r in rows] == [s.snr for s in truth]
    assert [float(r["extent_beams"]) for r in rows] == [s.extent_beams for s in truth]
    table = load_table(truth_csv)
    assert len(table) == len(truth) and table.kind == "truth"
    assert table.noise_jy == pytest.approx(NOISE)
    assert np.array_equal(table.peak, [s.peak_jy for s in truth])
    assert np.array_equal(table.ra, [s.ra for s in truth])
    assert np.array_equal(table.point, [s.type == "point" for s in truth])


def test_same_seed_same_map(tmp_path: Path) -> None:
    sky = RealisticSky(size=300, diffuse_jy=30e-6)
    a = simulate_realistic_sky(tmp_path / "a.fits", sky, seed=7)
    b = simulate_realistic_sky(tmp_path / "b.fits", sky, seed=7)
    c = simulate_realistic_sky(tmp_path / "c.fits", sky, seed=8)
    assert a == b and a != c
    assert np.array_equal(fits.getdata(tmp_path / "a.fits"), fits.getdata(tmp_path / "b.fits"))
    assert not np.array_equal(fits.getdata(tmp_path / "a.fits"), fits.getdata(tmp_path / "c.fits"))


def test_sources_blend_unless_separated(
    issue_map: tuple[Path, Path, list[RealisticSource]], tmp_path: Path
) -> None:
    def closest_px(truth: list[RealisticSource]) -> float:
        xy = np.array([(s.x, s.y) for s in truth])
        d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
        np.fill_diagonal(d2, np.inf)
        return math.sqrt(float(d2.min()))

    assert closest_px(issue_map[2]) < 15.0 / 4.0  # crowded: some pairs closer than a beam
    apart = simulate_realistic_sky(
        tmp_path / "s.fits", RealisticSky(size=400, min_separation_beams=1.0), seed=1
    )
    assert closest_px(apart) >= 15.0 / 4.0


def test_power_law_bounds_and_slope_one() -> None:
    rng = np.random.default_rng(0)
    lo = np.full(50_000, 1e-4)
    values = power_law(rng, lo, 1e-2, 1.0)
    assert values.min() >= 1e-4 and values.max() <= 1e-2
    assert np.median(np.log10(values)) == pytest.approx(-3.0, abs=0.02)  # log-uniform


@pytest.mark.parametrize(
    ("sky", "message"),
    [
        (RealisticSky(min_snr=0.0), "min_snr"),
        (RealisticSky(counts_slope=-1.0), "counts_slope"),
        (RealisticSky(extended_fraction=1.5), "extended_fraction"),
        (RealisticSky(max_flux_jy=1e-4), "max_flux_jy"),
        (RealisticSky(diffuse_jy=-1.0), "diffuse_jy"),
        (RealisticSky(noise_jy=0.0), "noise_jy"),
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, sky: RealisticSky, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_realistic_sky(tmp_path / "x.fits", sky)
