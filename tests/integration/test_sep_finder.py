"""The sep finder run as the platform runs it: a subprocess on a synthetic image with a known truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cirasa.finders.catalog import read_catalog_json
from cirasa.finders.imaging import synthetic_image
from tests.matching import match_count

pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cirasa.finders.runners.sep", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_finds_the_injected_sources(tmp_path: Path) -> None:
    image = tmp_path / "field.fits"
    truth = synthetic_image(image, size=512, n_sources=40, seed=11)
    out = tmp_path / "out"

    result = _run("--image", str(image), "--out-dir", str(out), "--seedthr", "5.0", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {
        "catalog-field.json",
        "catalog-field.csv",
        "catalog-field.vot",
        "ds9-field.reg",
        "plot_field.png",
    }
    assert set(summary["products"]) == expected
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0

    catalog = read_catalog_json(out / "catalog-field.json")
    assert summary["n_sources"] == len(catalog.sources)
    assert catalog.image == "field.fits" and catalog.finder == "sep"
    truth_xy = np.array([(s.x, s.y) for s in truth])
    found_xy = np.array([(s.x_pix, s.y_pix) for s in catalog.sources])
    matched = match_count(truth_xy, found_xy)
    assert matched >= 0.90 * len(truth), f"{matched}/{len(truth)} injected sources recovered"
    assert matched >= 0.95 * len(catalog.sources), f"{matched}/{len(catalog.sources)} detections are real"

    # point sources: the brightest pixel and the isophotal flux both land near the injected peak
    by_peak = sorted(truth, key=lambda s: s.peak_jy)
    found_peaks = sorted(s.peak_flux_jy or 0.0 for s in catalog.sources)
    if len(found_peaks) == len(by_peak):
        ratios = np.array(found_peaks) / np.array([s.peak_jy for s in by_peak])
        assert 0.85 < float(np.median(ratios)) < 1.05
    assert all(s.ra_deg is not None and s.maj_arcsec is not None for s in catalog.sources)


def test_products_without_preview(tmp_path: Path) -> None:
    image = tmp_path / "small.fits"
    synthetic_image(image, size=128, n_sources=3, seed=2)
    result = _run(
        "--image", str(image), "--out-dir", str(tmp_path / "o"), "--no-preview", "--no-clean", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "o" / "plot_small.png").exists()
    assert (tmp_path / "o" / "catalog-small.json").is_file()


def test_not_fits_exits_2_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.fits"
    bogus.write_text("this is not a FITS file\n")
    result = _run("--image", str(bogus), "--out-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a readable FITS file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = _run("--image", str(tmp_path / "nope.fits"), "--out-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "sep_finder: error: image not found: nope.fits"
