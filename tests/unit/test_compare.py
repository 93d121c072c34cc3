"""Catalogue comparison and merging, on hand-made catalogues whose scores are known exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cirasa.cli.main import app
from cirasa.finders.catalog import Catalog, CatalogSource
from cirasa.finders.compare import (
    CompareError,
    MergedCatalog,
    compare,
    load_table,
    match,
    merge,
)
from cirasa.finders.imaging import TruthSource, write_truth_csv

RA0, DEC0 = 150.0, -30.0
ARCSEC = 1.0 / 3600.0
NOISE = 20e-6


def _ra(k: int) -> float:
    return RA0 + 0.02 * k  # 62" apart at this declination: far beyond the 15" radius


def _write_truth(
    path: Path, rows: list[tuple[int, str, float, float, float]], noise: float | None = NOISE
) -> Path:
    """rows: (id, type, ra, dec, peak)."""
    columns = ["id", "type", "ra", "dec", "x", "y", "flux_jy", "peak_jy", "maj", "min", "pa"]
    if noise is not None:
        columns.append("noise_jy")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i, kind, ra, dec, peak in rows:
            row = [i, kind, ra, dec, 0.0, 0.0, peak, peak, 15.0, 15.0, 0.0]
            writer.writerow([*row, noise] if noise is not None else row)
    return path


def _write_catalog(path: Path, rows: list[tuple[float, float, float]], finder: str = "sep") -> Path:
    """rows: (ra, dec, peak); identifiers S1, S2, ... in the given order."""
    sources = [
        CatalogSource(
            source_id=f"S{k}",
            component_id=f"S{k}c1",
            island_id=k,
            ra_deg=ra,
            dec_deg=dec,
            x_pix=0.0,
            y_pix=0.0,
            peak_flux_jy=peak,
            peak_flux_err_jy=NOISE,
            int_flux_jy=2 * peak,
            snr=peak / NOISE,
            finder=finder,
        )
        for k, (ra, dec, peak) in enumerate(rows, start=1)
    ]
    catalog = Catalog(finder=finder, finder_version="1.0", image="sky.fits", sources=sources)
    path.write_text(catalog.model_dump_json())
    return path


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Path, Path]:
    """8 bright point sources (targets), 1 faint point source (2.5 sigma), 1 extended source.

    Detections: 6 targets shifted 2" north with 0.9 of their peak; targets 7 and 8 missed; the faint
    source 1" off with 1.2 of its peak; the extended one 3" off with its peak; a second detection of
    source 1, 5" off (a duplicate); two detections far from everything (false).
    """
    truth_rows = [(k, "point", _ra(k), DEC0, 1e-3) for k in range(1, 9)]
    truth_rows += [(9, "point", _ra(9), DEC0, 50e-6), (10, "extended", _ra(10), DEC0, 2e-4)]
    truth = _write_truth(tmp_path / "sky.truth.csv", truth_rows)
    detections = [(_ra(k), DEC0 + 2 * ARCSEC, 0.9e-3) for k in range(1, 7)]
    detections += [
        (_ra(9), DEC0 - 1 * ARCSEC, 60e-6),
        (_ra(10), DEC0 + 3 * ARCSEC, 2e-4),
        (_ra(1), DEC0 - 5 * ARCSEC, 0.5e-3),
        (RA0, DEC0 + 0.5, 1e-3),
        (RA0 + 0.1, DEC0 + 0.5, 1e-3),
    ]
    catalog = _write_catalog(tmp_path / "catalog-sky.json", detections)
    return catalog, truth


def test_exact_scores(scenario: tuple[Path, Path]) -> None:
    catalog, truth = scenario
    result = compare(load_table(catalog), load_table(truth))
    assert result.noise_jy == NOISE  # from the truth file
    assert (result.n_detections, result.n_reference, result.n_targets) == (11, 10, 8)
    assert (result.matched, result.matched_targets, result.false, result.duplicates) == (8, 6, 2, 1)
    assert result.completeness == 6 / 8
    assert result.reliability == 8 / 11
    assert result.median_offset_arcsec == pytest.approx(2.0, abs=1e-6)
    assert result.median_peak_ratio == pytest.approx(0.9)
    assert result.detections_label == "sep" and result.reference_label == "truth"


def test_snr_cut_and_noise_override(scenario: tuple[Path, Path]) -> None:
    catalog, truth = scenario
    detections, reference = load_table(catalog), load_table(truth)
    everything = compare(detections, reference, snr_min=0.0)
    assert (everything.n_targets, everything.matched_targets) == (9, 7)  # the extended one is never a target
    low_noise = compare(detections, reference, noise_jy=1e-6)
    assert (low_noise.n_targets, low_noise.matched_targets, low_noise.noise_jy) == (9, 7, 1e-6)
    strict = compare(detections, reference, snr_min=100.0)
    assert (strict.n_targets, strict.completeness) == (0, None)


def test_radius(scenario: tuple[Path, Path]) -> None:
    catalog, truth = scenario
    tight = compare(load_table(catalog), load_table(truth), radius_arcsec=2.5)
    # the 3" extended match and the 5" duplicate fall outside: both now count as false
    assert (tight.matched, tight.matched_targets, tight.false, tight.duplicates) == (7, 6, 4, 0)


def test_closest_pair_first(tmp_path: Path) -> None:
    """A at 0", B at 10" north; d1 at 4" (nearest A), d2 at 1". Closest pairs: (A, d2), then (B, d1)."""
    truth = load_table(
        _write_truth(
            tmp_path / "t.csv", [(1, "point", RA0, DEC0, 1e-3), (2, "point", RA0, DEC0 + 10 * ARCSEC, 1e-3)]
        )
    )
    found = load_table(
        _write_catalog(tmp_path / "c.json", [(RA0, DEC0 + 4 * ARCSEC, 1e-3), (RA0, DEC0 + 1 * ARCSEC, 1e-3)])
    )
    pairs, near = match(truth, found, 15.0)
    assert [(r, d) for r, d, _ in pairs] == [(0, 1), (1, 0)]
    assert [round(s, 6) for _, _, s in pairs] == [1.0, 6.0]
    assert near.tolist() == [True, True]
    result = compare(found, truth)
    assert (result.completeness, result.reliability, result.duplicates) == (1.0, 1.0, 0)


def test_catalog_against_catalog_and_csv(scenario: tuple[Path, Path], tmp_path: Path) -> None:
    catalog, _ = scenario
    from cirasa.finders.catalog import read_catalog_json, write_products

    paths = write_products(read_catalog_json(catalog), tmp_path / "out", "sky")
    same = compare(load_table(paths["csv"]), load_table(catalog))
    assert (same.completeness, same.reliability, same.median_offset_arcsec) == (1.0, 1.0, 0.0)
    assert same.noise_jy == pytest.approx(NOISE)  # the reference catalogue's peak errors
    assert same.n_targets == 10  # peaks >= 100 uJy: all but the 60 uJy detection


def test_noise_is_needed_for_a_signal_to_noise_cut(tmp_path: Path) -> None:
    legacy = write_truth_csv(tmp_path / "old.csv", [TruthSource(1, 0.0, 0.0, RA0, DEC0, 1e-3, 1e-3)])
    found = load_table(_write_catalog(tmp_path / "c.json", [(RA0, DEC0, 1e-3)]))
    with pytest.raises(CompareError, match="noise"):
        compare(found, load_table(legacy))
    assert compare(found, load_table(legacy), noise_jy=NOISE).completeness == 1.0
    assert compare(found, load_table(legacy), snr_min=0).completeness == 1.0


def test_unreadable_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CompareError, match="not a catalogue"):
        load_table(bad)
    with pytest.raises(CompareError, match="no such file"):
        load_table(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(CompareError, match="not a CIRASA catalogue"):
        load_table(broken)


def test_empty_catalogue(tmp_path: Path) -> None:
    truth = load_table(_write_truth(tmp_path / "t.csv", [(1, "point", RA0, DEC0, 1e-3)]))
    empty = load_table(_write_catalog(tmp_path / "c.json", []))
    result = compare(empty, truth)
    assert (result.completeness, result.reliability, result.median_offset_arcsec) == (0.0, None, None)


def test_merge_keeps_provenance(tmp_path: Path) -> None:
    p = [(_ra(k), DEC0) for k in range(1, 6)]
    sep = _write_catalog(tmp_path / "sep.json", [(*p[0], 1.0), (*p[1], 2.0), (*p[2], 3.0)], "sep")
    aegean = _write_catalog(
        tmp_path / "aegean.json",
        [(p[0][0], p[0][1] + ARCSEC, 1.1), (p[1][0], p[1][1] + ARCSEC, 2.1), (*p[3], 4.1)],
        "aegean",
    )
    pybdsf = _write_catalog(
        tmp_path / "pybdsf.json", [(p[0][0], p[0][1] - ARCSEC, 1.2), (*p[4], 5.2)], "pybdsf"
    )
    files = [sep, aegean, pybdsf]
    merged = merge([load_table(f) for f in files], files)
    assert [s.finders for s in merged.sources] == [
        ["sep", "aegean", "pybdsf"],
        ["sep", "aegean"],
        ["sep"],
        ["aegean"],
        ["pybdsf"],
    ]
    first = merged.sources[0]
    assert first.n_finders == 3
    assert first.ra_deg == pytest.approx(p[0][0]) and first.dec_deg == pytest.approx(p[0][1], abs=1e-9)
    assert [(m.component_id, m.peak_flux_jy, m.int_flux_jy) for m in first.members] == [
        ("S1c1", 1.0, 2.0),
        ("S1c1", 1.1, 2.2),
        ("S1c1", 1.2, 2.4),
    ]
    assert [m.separation_arcsec for m in first.members] == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)
    second = merged.sources[1]
    assert second.dec_deg == pytest.approx(DEC0 + 0.5 * ARCSEC)
    assert [i.label for i in merged.inputs] == ["sep", "aegean", "pybdsf"]
    assert [i.n_sources for i in merged.inputs] == [3, 3, 2]


def test_merge_labels_repeated_finders(tmp_path: Path) -> None:
    a = _write_catalog(tmp_path / "a.json", [(RA0, DEC0, 1.0)])
    b = _write_catalog(tmp_path / "b.json", [(RA0, DEC0 + 30 * ARCSEC, 1.0)])
    merged = merge([load_table(a), load_table(b)], [a, b])
    assert [i.label for i in merged.inputs] == ["sep:a", "sep:b"]
    assert [s.finders for s in merged.sources] == [["sep:a"], ["sep:b"]]


def test_cli_compare_json_and_table(scenario: tuple[Path, Path]) -> None:
    catalog, truth = scenario
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(catalog), str(truth), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert (scores["completeness"], scores["reliability"], scores["false"], scores["duplicates"]) == (
        0.75,
        8 / 11,
        2,
        1,
    )
    table = runner.invoke(app, ["compare", str(catalog), str(truth), "--radius-arcsec", "2.5"])
    assert table.exit_code == 0 and "completeness" in table.stdout and "75.000%" in table.stdout


def test_cli_compare_errors(tmp_path: Path) -> None:
    legacy = write_truth_csv(tmp_path / "old.csv", [TruthSource(1, 0.0, 0.0, RA0, DEC0, 1e-3, 1e-3)])
    found = _write_catalog(tmp_path / "c.json", [(RA0, DEC0, 1e-3)])
    runner = CliRunner()
    assert runner.invoke(app, ["compare", str(found), str(legacy)]).exit_code == 2
    ok = runner.invoke(app, ["compare", str(found), str(legacy), "--noise-ujy", "20", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["noise_jy"] == NOISE


def test_cli_merge(tmp_path: Path) -> None:
    a = _write_catalog(tmp_path / "a.json", [(RA0, DEC0, 1.0)], "sep")
    b = _write_catalog(tmp_path / "b.json", [(RA0, DEC0 + ARCSEC, 1.0)], "photutils")
    out = tmp_path / "merged.json"
    result = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    merged = MergedCatalog.model_validate_json(out.read_text())
    assert [s.finders for s in merged.sources] == [["sep", "photutils"]]
    assert merged.sources[0].dec_deg == pytest.approx(DEC0 + 0.5 * ARCSEC)
    assert CliRunner().invoke(app, ["merge", str(a), "-o", str(out)]).exit_code == 2


def test_large_catalogues_match_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    ra, dec = RA0 + rng.uniform(-2, 2, n), DEC0 + rng.uniform(-2, 2, n)
    truth = _write_truth(
        tmp_path / "t.csv", [(i, "point", r, d, 1e-3) for i, (r, d) in enumerate(zip(ra, dec, strict=True))]
    )
    found = _write_catalog(
        tmp_path / "c.json", [(r, d + 0.5 * ARCSEC, 1e-3) for r, d in zip(ra, dec, strict=True)]
    )
    result = compare(load_table(found), load_table(truth), radius_arcsec=1.0)
    assert result.matched >= 0.999 * n
