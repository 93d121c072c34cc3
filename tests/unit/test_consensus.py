"""The consensus vote on hand-made catalogues whose outcome is known exactly, and the app's options."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cirasa.finders.catalog import CATALOG_COLUMNS, Catalog, CatalogSource, write_preview_png, write_products
from cirasa.finders.consensus import ConsensusError, build_consensus, default_min_votes
from cirasa.finders.registry import APPS, OptionError
from cirasa.finders.runners.consensus import finder_argv, finder_env, mad_noise
from cirasa.finders.runners.support import InputError

RA0, DEC0 = 150.0, -30.0
ARCSEC = 1.0 / 3600.0
NOISE = 20e-6
CONSENSUS = APPS["consensus"]


def _ra(k: int) -> float:
    return RA0 + 0.02 * k  # 62" apart: far beyond the 15" match radius


def _source(
    k: int, ra: float, dec: float, snr: float, finder: str, noise: float | None = NOISE
) -> CatalogSource:
    peak = snr * NOISE
    return CatalogSource(
        source_id=f"S{k}",
        component_id=f"S{k}c1",
        island_id=k,
        ra_deg=ra,
        dec_deg=dec,
        x_pix=100.0 * k,
        y_pix=50.0,
        peak_flux_jy=peak,
        peak_flux_err_jy=noise,
        int_flux_jy=peak * 1.1,
        maj_arcsec=15.0 + k,
        min_arcsec=15.0,
        pa_deg=10.0 * k,
        snr=snr if noise is not None else None,
        finder=finder,
    )


def _catalog(finder: str, rows: list[tuple[float, float, float]], noise: float | None = NOISE) -> Catalog:
    """rows: (ra, dec, snr); identifiers S1, S2, ... in the given order."""
    sources = [_source(k, ra, dec, snr, finder, noise) for k, (ra, dec, snr) in enumerate(rows, 1)]
    return Catalog(finder=finder, finder_version="1.0", image="field.fits", sources=sources)


def _two_finders() -> list[Catalog]:
    """Source 1 found by both, 2 by sep alone (faint), 3 by photutils alone (bright)."""
    sep = _catalog("sep", [(_ra(1), DEC0, 8.0), (_ra(2), DEC0, 6.0)])
    photutils = _catalog("photutils", [(_ra(1), DEC0 + 4 * ARCSEC, 9.0), (_ra(3), DEC0, 50.0)])
    return [sep, photutils]


def test_two_finders_agreeing_keep_the_source_with_both_in_its_provenance() -> None:
    result = build_consensus(_two_finders())

    agreed = [s for s in result.catalog.sources if s.finder == "sep+photutils"]
    assert len(agreed) == 1
    vote = next(v for v in result.report.votes if v.id == agreed[0].source_id)
    assert vote.kept and vote.reason == "votes" and vote.n_votes == 2 and vote.finders == ["sep", "photutils"]
    merged = next(s for s in result.report.merged.sources if s.id == agreed[0].source_id)
    assert [(m.finder, m.component_id) for m in merged.members] == [("sep", "S1c1"), ("photutils", "S1c1")]
    assert result.report.finders == ["sep", "photutils"] and result.report.min_votes == 2


def test_one_finder_alone_and_faint_is_dropped() -> None:
    result = build_consensus(_two_finders())

    assert not any(abs(s.ra_deg - _ra(2)) < ARCSEC for s in result.catalog.sources if s.ra_deg is not None)
    faint = next(v for v in result.report.votes if v.finders == ["sep"])
    assert not faint.kept and faint.reason == "dropped" and faint.best_snr == pytest.approx(6.0)
    assert result.report.n_merged == 3 and result.report.n_kept == 2 == len(result.catalog.sources)


def test_one_finder_alone_and_bright_is_kept() -> None:
    result = build_consensus(_two_finders())

    bright = [s for s in result.catalog.sources if s.finder == "photutils"]
    assert len(bright) == 1 and bright[0].ra_deg == pytest.approx(_ra(3))
    vote = next(v for v in result.report.votes if v.id == bright[0].source_id)
    assert vote.reason == "bright" and vote.best_snr == pytest.approx(50.0)
    # above a higher bar it is dropped too
    strict = build_consensus(_two_finders(), solo_snr=60.0)
    assert [s.finder for s in strict.catalog.sources] == ["sep+photutils"]


def test_min_votes_is_respected() -> None:
    """Three finders: source 1 found by all, 2 by two of them, 3 by one (faint)."""
    a = _catalog("sep", [(_ra(1), DEC0, 7.0), (_ra(2), DEC0, 7.0), (_ra(3), DEC0, 6.0)])
    b = _catalog("photutils", [(_ra(1), DEC0, 7.0), (_ra(2), DEC0, 7.0)])
    c = _catalog("aegean", [(_ra(1), DEC0, 7.0)])

    def kept(min_votes: int | None = None) -> list[int]:
        sources = build_consensus([a, b, c], min_votes=min_votes).catalog.sources
        return sorted(round(((s.ra_deg or 0.0) - RA0) / 0.02) for s in sources)

    assert kept() == [1, 2]  # a majority of 3 is 2
    assert kept(min_votes=3) == [1]
    assert kept(min_votes=1) == [1, 2, 3]
    with pytest.raises(ConsensusError, match="min_votes"):
        build_consensus([a, b], min_votes=0)


@pytest.mark.parametrize(("n", "votes"), [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_the_default_is_a_majority_and_at_least_two(n: int, votes: int) -> None:
    assert default_min_votes(n) == votes


def test_positions_are_averaged_and_fluxes_are_medians() -> None:
    a = _catalog("sep", [(_ra(1), DEC0 - 3 * ARCSEC, 10.0)])
    b = _catalog("photutils", [(_ra(1), DEC0 + 3 * ARCSEC, 20.0)])
    c = _catalog("aegean", [(_ra(1), DEC0 + 6 * ARCSEC, 40.0)])
    c.sources[0].x_pix = 400.0

    (source,) = build_consensus([a, b, c]).catalog.sources

    assert source.dec_deg == pytest.approx(DEC0 + 2 * ARCSEC, abs=1e-3 * ARCSEC)
    assert source.ra_deg == pytest.approx(_ra(1), abs=1e-3 * ARCSEC)
    assert source.x_pix == pytest.approx(200.0) and source.y_pix == pytest.approx(50.0)
    assert source.peak_flux_jy == pytest.approx(20.0 * NOISE) and source.snr == pytest.approx(20.0)
    assert source.int_flux_jy == pytest.approx(22.0 * NOISE)
    assert source.finder == "sep+photutils+aegean" and source.component_id.startswith(source.source_id)


def test_without_a_catalogue_noise_the_image_noise_sets_the_snr() -> None:
    quiet = _catalog("sep", [(_ra(1), DEC0, 8.0)], noise=None)
    other = _catalog("photutils", [(_ra(2), DEC0, 8.0)], noise=None)

    assert build_consensus([quiet, other]).catalog.sources == []  # no noise known: nothing is bright
    loud = build_consensus([quiet, other], image_noise_jy=NOISE / 2)  # now both are 16 sigma
    assert len(loud.catalog.sources) == 2
    assert loud.report.noise_jy == {"sep": NOISE / 2, "photutils": NOISE / 2}


def test_the_output_catalog_writes_every_product(tmp_path: Path) -> None:
    result = build_consensus(_two_finders(), options={"seedthr": 4.0}, failed={"aegean": "exit 2: no beam"})
    catalog = result.catalog
    assert catalog.finder == "consensus" and catalog.image == "field.fits"
    assert catalog.options["seedthr"] == 4.0 and catalog.options["failed"] == ["aegean"]

    paths = write_products(catalog, tmp_path, "field")
    png = write_preview_png(np.random.default_rng(0).normal(size=(64, 64)), None, catalog, tmp_path / "p.png")

    assert png.read_bytes()[:4] == b"\x89PNG"
    assert Catalog.model_validate_json(paths["json"].read_text()) == catalog
    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["finder"] for r in rows] == ["sep+photutils", "photutils"]
    assert tuple(Table.read(paths["votable"], format="votable").colnames) == CATALOG_COLUMNS
    assert paths["ds9"].read_text().count("ellipse(") == 2
    report = json.loads(result.report.model_dump_json())
    assert report["failed"] == {"aegean": "exit 2: no beam"} and len(report["votes"]) == 3


def test_no_catalogue_is_an_error() -> None:
    with pytest.raises(ConsensusError, match="at least one finder"):
        build_consensus([])


def test_the_app_validates_its_finders_and_sizes_its_job() -> None:
    assert CONSENSUS.validate({"finders": " sep , pybdsf"}).values == {"finders": "sep,pybdsf"}
    for bad in ("sep,bogus", "sep,sep", "", "sep,", 3):
        with pytest.raises(OptionError, match="finders"):
            CONSENSUS.validate({"finders": bad})
    default = CONSENSUS.resources_for({})  # sep, photutils and pybdsf: at once on 3 cores, in turn on 1
    assert (default.min_cores, default.max_cores) == (1, 3)
    three = CONSENSUS.resources_for({"finders": "sep,photutils,aegean"})
    assert (three.min_cores, three.max_cores) == (1, 3)
    assert three.min_memory_gib == pytest.approx(2.5) and three.duration_s == 3600
    assert CONSENSUS.resources_for({"finders": "sep"}).min_cores == 1
    argv = CONSENSUS.build_argv({"finders": "sep", "min-votes": 2, "no-preview": True}, "/d/x.fits")
    assert argv[3:6] == ["--finders=sep", "--min-votes=2", "--no-preview"]


def test_each_finder_gets_its_own_threshold_option(tmp_path: Path) -> None:
    image = tmp_path / "x.fits"
    assert "--seedthr=4.5" in finder_argv("sep", image, 4.5)
    assert "--thresh-pix=4.5" in finder_argv("pybdsf", image, 4.5)
    assert "--no-preview" in finder_argv("photutils", image, 4.5)
    with pytest.raises(InputError, match="seedthr"):
        finder_argv("sep", image, 0.1)


def test_the_image_noise_is_robust_to_sources() -> None:
    data = np.random.default_rng(1).normal(0.0, NOISE, size=(200, 200))
    data[90:110, 90:110] = 1.0  # a bright source
    data[0, 0] = np.nan
    assert mad_noise(data) == pytest.approx(NOISE, rel=0.05)
    assert mad_noise(np.zeros((4, 4))) is None


def test_each_finder_gets_its_share_of_the_cores() -> None:
    env = finder_env(3)
    assert env["CIRASA_JOB_CORES"] == env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
