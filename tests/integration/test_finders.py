"""The aegean, pybdsf and photutils finders run as the platform runs them: subprocesses on a synthetic map
with a known truth, then aegean as a job through the REST API."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cirasa.finders.catalog import CATALOG_COLUMNS, read_catalog_json
from cirasa.finders.imaging import TruthSource, synthetic_image
from tests.conftest import API, Stack
from tests.matching import match_count

pytestmark = pytest.mark.slow

FINDERS = ("aegean", "pybdsf", "photutils")
NATIVE = {
    "aegean": {"field_aegean_comp.csv", "field_aegean_comp.vot", "field_aegean_comp.reg", "field_aegean.log"},
    "pybdsf": {"field.pybdsf.srl.fits", "field.pybdsf.gaul.fits", "field.fits.pybdsf.log"},
    "photutils": {"field_photutils.ecsv", "field_photutils_segm.fits"},
}


def _run(finder: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", f"cirasa.finders.runners.{finder}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TruthSource]]:
    image = tmp_path_factory.mktemp("field") / "field.fits"
    return image, synthetic_image(image, size=512, n_sources=40, seed=11)


@pytest.fixture(scope="module")
def stripped(field: tuple[Path, list[TruthSource]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same map without beam or frequency keywords."""
    path = tmp_path_factory.mktemp("stripped") / "bare.fits"
    with fits.open(field[0]) as hdul:
        header = hdul[0].header.copy()
        for key in ("BMAJ", "BMIN", "BPA", "FREQ", "RESTFRQ"):
            del header[key]
        fits.PrimaryHDU(hdul[0].data, header=header).writeto(path)
    return path


@pytest.mark.parametrize("finder", FINDERS)
def test_finds_the_injected_sources(
    finder: str, field: tuple[Path, list[TruthSource]], tmp_path: Path
) -> None:
    image, truth = field
    out = tmp_path / "out"

    result = _run(finder, "--image", str(image), "--out-dir", str(out), cwd=tmp_path)

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
    for name in expected | NATIVE[finder]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "plot_field.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    catalog = read_catalog_json(out / "catalog-field.json")
    n = len(catalog.sources)
    assert summary["n_sources"] == n
    assert catalog.finder == finder and catalog.finder_version and catalog.image == "field.fits"
    assert catalog.options["beam_from"] == "header" and math.isclose(catalog.options["beam_maj_arcsec"], 15.0)
    with (out / "catalog-field.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CATALOG_COLUMNS
        assert len(list(reader)) == n
    votable = Table.read(out / "catalog-field.vot", format="votable")
    assert tuple(votable.colnames) == CATALOG_COLUMNS and len(votable) == n

    truth_xy = np.array([(s.x, s.y) for s in truth])
    found_xy = np.array([(s.x_pix, s.y_pix) for s in catalog.sources])
    matched = match_count(truth_xy, found_xy)
    assert matched >= 0.90 * len(truth), f"{matched}/{len(truth)} injected sources recovered"
    assert matched >= 0.95 * n, f"{matched}/{n} detections are real"

    for source in catalog.sources:  # every standard field is filled, errors included
        missing = [k for k, v in source.model_dump().items() if v is None]
        assert not missing, f"{source.component_id}: {missing}"
        assert source.component_id.startswith(source.source_id) and source.island_id >= 1
        assert 0.0 <= (source.pa_deg or 0.0) < 180.0
    # point sources of a 15" beam: the fitted (or moment) axes are the beam's
    assert 13.0 < float(np.median([s.maj_arcsec for s in catalog.sources])) < 17.0


@pytest.mark.parametrize("finder", FINDERS)
def test_a_map_without_beam_is_refused(finder: str, stripped: Path, tmp_path: Path) -> None:
    result = _run(finder, "--image", str(stripped), "--out-dir", str(tmp_path / "out"), cwd=tmp_path)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no beam in the image header (BMAJ/BMIN)" in lines[0] and "beam-maj" in lines[0]
    assert not list(tmp_path.rglob("catalog-*"))


def test_pybdsf_needs_a_frequency_and_takes_it_from_the_option(stripped: Path, tmp_path: Path) -> None:
    beam = ("--beam-maj=15", "--beam-min=15", "--no-preview")
    refused = _run("pybdsf", *beam, "--image", str(stripped), "--out-dir", str(tmp_path / "a"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "no frequency in the image header" in refused.stderr and "frequency option" in refused.stderr

    out = tmp_path / "b"
    ran = _run(
        "pybdsf", *beam, "--frequency=1.4e9", "--image", str(stripped), "--out-dir", str(out), cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    catalog = read_catalog_json(out / "catalog-bare.json")
    assert catalog.options["frequency"] == 1.4e9 and catalog.options["beam_from"] == "options"
    assert len(catalog.sources) >= 36


def test_bane_never_gets_more_stripes_than_workers() -> None:
    """The Aegean hang: BANE's barrier waits for one worker per stripe, and its rounding can add a stripe."""
    from cirasa.finders.runners.aegean import bane_stripes

    assert bane_stripes(1000, 2, 19) == 1  # 2 stripes would be 3 (widths of 499 rows): a deadlock
    assert bane_stripes(512, 2, 20) == 2
    for rows in range(5, 3000, 37):
        for cores in range(1, 9):
            for grid in (5, 16, 19, 20, 64):
                stripes = bane_stripes(rows, cores, grid)
                width = int(max(rows / stripes / grid, 1) * grid)
                assert 1 <= stripes <= cores
                assert stripes == 1 or math.ceil(rows / width) <= cores


async def test_aegean_job_through_the_rest_api(memory_stack: Stack, fits_image: Path) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit("aegean", file_id, {"seedthr": 5, "ncores": 2})
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=150)

    assert status["state"] == "SUCCESS", status
    sources = (await memory_stack.client.get(f"{API}/job/{job_id}/sources")).json()
    assert sources["finder"] == "aegean" and len(sources["sources"]) >= 10
    assert set(sources["sources"][0]) == set(CATALOG_COLUMNS)
    preview = (await memory_stack.client.get(f"{API}/job/{job_id}/preview")).json()
    assert preview["image"].startswith("iVBOR")  # base64 of a PNG
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    assert len(list(job_dir.glob("*_aegean_comp.csv"))) == 1  # Aegean's own table stays in the job directory


@pytest.mark.parametrize(
    ("app", "options"), [("pybdsf", {"thresh-pix": 5.0}), ("photutils", {"seedthr": 5.0})]
)
async def test_other_finders_through_the_rest_api(
    memory_stack: Stack, fits_image: Path, app: str, options: dict[str, Any]
) -> None:
    file_id = await memory_stack.upload(fits_image)
    job_id = await memory_stack.submit(app, file_id, options)
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=150)
    assert status["state"] == "SUCCESS", status
    sources = (await memory_stack.client.get(f"{API}/job/{job_id}/sources")).json()
    assert sources["finder"] == app and len(sources["sources"]) >= 10
    assert set(sources["sources"][0]) == set(CATALOG_COLUMNS)
    for route in ("output-plot", "output"):
        assert (await memory_stack.client.get(f"{API}/job/{job_id}/{route}")).status_code == 200
