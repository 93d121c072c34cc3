"""bench/finders.py's realistic-sky scoring on a tiny truth and catalogue, without running finders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.finders import BINS, bin_masks, ideal_bins, score_bins

from cirasa.finders.compare import SourceTable

NOISE = 20e-6
DEC0 = -30.0
STEP_DEG = 100.0 / 3600.0  # sources 100" apart: each match is unambiguous at the 15" radius


def _table(kind: str, snr: list[float], offsets: list[int], point: list[bool] | None = None) -> SourceTable:
    """Sources on a line of declination at ``offsets`` x 100" from RA 150 deg."""
    n = len(snr)
    ra = 150.0 + np.array(offsets, dtype=float) * STEP_DEG / math.cos(math.radians(DEC0))
    return SourceTable(
        label=kind,
        kind=kind,
        source_ids=[str(i) for i in range(n)],
        component_ids=[str(i) for i in range(n)],
        ra=ra,
        dec=np.full(n, DEC0),
        peak=np.array(snr) * NOISE,
        flux=np.array(snr) * NOISE,
        point=np.ones(n, dtype=bool) if point is None else np.array(point),
        noise_jy=NOISE if kind == "truth" else None,
    )


# truth: index -> true SNR; 0-1 below 5 sigma, 2-4 in 5-10, 5-6 in 10-25, 7-8 above 25, 9-10 extended
TRUTH_SNR = [3.0, 4.5, 5.0, 7.0, 9.0, 12.0, 20.0, 30.0, 500.0, 6.0, 40.0]
TRUTH_POINT = [True] * 9 + [False, False]


def _truth() -> SourceTable:
    return _table("truth", TRUTH_SNR, list(range(len(TRUTH_SNR))), TRUTH_POINT)


def test_bins_follow_the_true_snr() -> None:
    masks = bin_masks(_truth())
    assert list(masks) == list(BINS)
    members = {label: np.flatnonzero(mask).tolist() for label, mask in masks.items()}
    assert members == {
        "snr>=5": [2, 3, 4, 5, 6, 7, 8, 9, 10],
        "snr5-10": [2, 3, 4, 9],
        "snr10-25": [5, 6],
        "snr>25": [7, 8, 10],
        "extended": [9, 10],
    }


def test_completeness_per_bin_and_reliability() -> None:
    # found: truth 0 (3 sigma), 3, 5, 7, 8, 10; plus a detection 1" off truth 8 (a duplicate) and one
    # far from everything (false)
    detections = _table("sep", [1.0] * 8, [0, 3, 5, 7, 8, 10, 8, 40])
    detections.ra[6] += 1.0 / 3600.0
    row = score_bins(detections, _truth(), radius_arcsec=15.0)
    assert row["snr>=5"] == pytest.approx(5 / 9)
    assert row["snr5-10"] == pytest.approx(1 / 4)
    assert row["snr10-25"] == pytest.approx(1 / 2)
    assert row["snr>25"] == pytest.approx(3 / 3)
    assert row["extended"] == pytest.approx(1 / 2)
    assert row["detections"] == 8
    assert row["reliability"] == pytest.approx(6 / 8)
    assert (row["false"], row["duplicates"]) == (1, 1)


def test_a_match_needs_to_be_within_the_radius() -> None:
    detections = _table("sep", [1.0], [8])
    detections.ra[0] += 20.0 / 3600.0 / math.cos(math.radians(DEC0))  # 20" from truth 8
    row = score_bins(detections, _truth(), radius_arcsec=15.0)
    assert row["snr>25"] == 0.0 and row["reliability"] == 0.0
    assert score_bins(detections, _truth(), radius_arcsec=25.0)["snr>25"] == pytest.approx(1 / 3)


def test_ideal_matched_filter_row() -> None:
    def phi(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    ideal = ideal_bins(_truth())
    assert ideal["snr5-10"] == pytest.approx(np.mean([phi(0.0), phi(2.0), phi(4.0), phi(1.0)]))
    assert ideal["snr10-25"] == pytest.approx(np.mean([phi(7.0), phi(15.0)]))
    assert ideal["extended"] == pytest.approx(np.mean([phi(1.0), phi(35.0)]))
    assert ideal["snr>=5"] == pytest.approx(np.mean([phi(s - 5.0) for s in TRUTH_SNR[2:]]))
    assert ideal["snr5-10"] is not None and ideal["snr5-10"] < 0.85  # a 5-sigma source is a coin toss
    assert ideal_bins(_truth(), threshold_snr=3.0)["snr5-10"] == pytest.approx(
        np.mean([phi(2.0), phi(4.0), phi(6.0), phi(3.0)])
    )


def test_empty_bins_and_catalogue() -> None:
    truth = _table("truth", [3.0, 7.0], [0, 1])
    row = score_bins(_table("sep", [], []), truth)
    assert row["snr5-10"] == 0.0 and row["snr>25"] is None and row["extended"] is None
    assert row["reliability"] is None
    assert ideal_bins(truth)["snr>25"] is None
