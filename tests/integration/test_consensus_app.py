"""The consensus app as the platform runs it: sep and photutils as subprocesses on a simulated map with a
known truth, scored against it; the failures it reports; and a job through the caesar-rest API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from cirasa.finders.catalog import CATALOG_COLUMNS, read_catalog_json
from cirasa.finders.compare import Comparison, compare, load_table
from cirasa.finders.consensus import ConsensusReport
from cirasa.finders.simulation import simulate_sky
from tests.conftest import API, Stack

pytestmark = pytest.mark.slow

SEEDTHR = "4.0"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cirasa.finders.runners.consensus", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 320x320 map of the test campaign (2,500 sources/deg2, 15" beam, 20 uJy/beam) and its truth."""
    folder = tmp_path_factory.mktemp("sky")
    simulate_sky(folder / "sky.fits", size=320, seed=7, truth_path=folder / "truth.csv")
    return folder / "sky.fits", folder / "truth.csv"


@pytest.fixture(scope="module")
def consensus_run(sky: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    image, _ = sky
    out = tmp_path_factory.mktemp("consensus") / "out"
    args = ("--finders", "sep,photutils", f"--seedthr={SEEDTHR}", "--parallel", "2")
    result = _run(
        *args, "--image", str(image), "--image-name", "deep field.fits", "--out-dir", str(out), cwd=out.parent
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def _score(path: Path, truth: Path) -> Comparison:
    return compare(load_table(path), load_table(truth))


def test_the_consensus_is_as_complete_as_the_best_finder_and_reliable(
    consensus_run: tuple[Path, dict], sky: tuple[Path, Path]
) -> None:
    out, summary = consensus_run
    truth = sky[1]
    cons = _score(out / "catalog-deep_field.json", truth)
    singles = {f: _score(out / f / "catalog-deep_field.json", truth) for f in ("sep", "photutils")}
    figures = {
        name: (c.n_detections, c.matched_targets, c.n_targets, c.completeness, c.reliability)
        for name, c in {"consensus": cons, **singles}.items()
    }
    print(f"(detections, matched targets, targets, completeness, reliability): {figures}")

    assert summary["finders"] == {f: c.n_detections for f, c in singles.items()} and summary["failed"] == []
    assert cons.matched_targets >= max(c.matched_targets for c in singles.values()), figures
    assert cons.reliability is not None and cons.reliability >= 0.995, figures
    assert cons.n_targets > 200 and cons.completeness is not None and cons.completeness > 0.95


def test_the_products_and_the_provenance(consensus_run: tuple[Path, dict]) -> None:
    out, summary = consensus_run
    expected = {
        "catalog-deep_field.json",
        "catalog-deep_field.csv",
        "catalog-deep_field.vot",
        "ds9-deep_field.reg",
        "plot_deep_field.png",
        "consensus-deep_field.json",
    }
    assert set(summary["products"]) == expected
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    catalog = read_catalog_json(out / "catalog-deep_field.json")
    assert catalog.finder == "consensus" and catalog.image == "deep_field.fits"
    assert catalog.options["seedthr"] == float(SEEDTHR) and catalog.options["finders"] == ["sep", "photutils"]
    assert summary["n_sources"] == len(catalog.sources) > 200
    report = ConsensusReport.model_validate_json((out / "consensus-deep_field.json").read_text())
    assert report.min_votes == 2 and report.n_kept == len(catalog.sources)  # the default: a majority
    kept = {v.id: v for v in report.votes if v.kept}
    assert [s.source_id for s in catalog.sources] == list(kept)
    for source in catalog.sources:
        assert source.finder.split("+") == kept[source.source_id].finders
    # each finder ran at the consensus threshold, without its own preview
    sep = read_catalog_json(out / "sep" / "catalog-deep_field.json")
    assert sep.options["seedthr"] == float(SEEDTHR) and not (out / "sep" / "plot_deep_field.png").exists()


@pytest.fixture(scope="module")
def beamless(sky: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The map without its beam: sep runs on it, photutils refuses it."""
    path = tmp_path_factory.mktemp("beamless") / "bare.fits"
    with fits.open(sky[0]) as hdul:
        header = hdul[0].header.copy()
        for key in ("BMAJ", "BMIN", "BPA"):
            del header[key]
        fits.PrimaryHDU(hdul[0].data, header=header).writeto(path)
    return path


def test_a_failing_finder_is_reported_and_the_others_still_count(beamless: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    finders = ("--finders", "sep,photutils")
    result = _run(*finders, "--no-preview", "--image", str(beamless), "--out-dir", str(out), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("consensus_finder: photutils failed: exit 2:") and "no beam" in line
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failed"] == ["photutils"] and list(summary["finders"]) == ["sep"]
    report = ConsensusReport.model_validate_json((out / "consensus-bare.json").read_text())
    assert report.finders == ["sep"] and "no beam" in report.failed["photutils"] and report.min_votes == 1
    assert len(read_catalog_json(out / "catalog-bare.json").sources) == summary["finders"]["sep"]


def test_when_no_finder_succeeds_it_exits_1(beamless: Path, tmp_path: Path) -> None:
    result = _run(
        "--finders", "photutils", "--image", str(beamless), "--out-dir", str(tmp_path), cwd=tmp_path
    )

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("consensus_finder: failed: RuntimeError: no finder succeeded (photutils: exit 2:")
    )
    assert not list(tmp_path.glob("catalog-*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--finders", "sep,bogus"), "unknown finder 'bogus'"),
        (("--finders", "sep,sep"), "names a finder twice"),
    ],
)
def test_bad_finder_names_are_refused(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result = _run(*args, "--image", "x.fits", "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_corrupt_image_is_refused_before_any_finder_runs(tmp_path: Path) -> None:
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    result = _run("--image", str(bad), "--out-dir", str(tmp_path / "out"), cwd=tmp_path)

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("consensus_finder: error:") and "broken.fits" in line
    assert not (tmp_path / "out" / "sep").exists()


async def test_a_consensus_job_through_the_rest_api(memory_stack: Stack, sky: tuple[Path, Path]) -> None:
    file_id = await memory_stack.upload(sky[0])
    job_id = await memory_stack.submit("consensus", file_id, {"finders": "sep,photutils", "seedthr": 4.5})
    status = await memory_stack.wait_state(job_id, {"SUCCESS", "FAILURE", "ABORTED"}, timeout_s=150)

    assert status["state"] == "SUCCESS", status
    sources = (await memory_stack.client.get(f"{API}/job/{job_id}/sources")).json()
    assert sources["finder"] == "consensus" and len(sources["sources"]) > 200
    assert set(sources["sources"][0]) == set(CATALOG_COLUMNS)
    assert {s["finder"] for s in sources["sources"]} <= {"sep+photutils", "sep", "photutils"}
    preview = await memory_stack.client.get(f"{API}/job/{job_id}/output-plot")
    assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"
    job_dir = memory_stack.settings.jobs_dir / "anonymous" / f"job_{job_id}"
    assert len(list(job_dir.glob("consensus-*.json"))) == 1
    assert len(list(job_dir.glob("*/catalog-*.json"))) == 2  # each finder's own catalogue, kept apart
