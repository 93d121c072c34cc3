"""bench/finders: runtime, peak memory, completeness and reliability of every runnable finder.

    .venv/bin/python bench/finders.py [--sizes 900 1800] [--densities 250 2500] [--apps sep photutils ...]
                                      [--timeout 900]

For each map size and source density, simulates a map with the CIRASA paper's recipe
(``cirasa.finders.simulation``), runs every finder as its own process exactly as a job would (one core:
BLAS/OpenMP threads pinned to 1), takes wall time, CPU time and peak RSS from ``os.wait4``, and scores
the catalogue against the truth with ``cirasa compare`` (1-beam radius; targets: point sources of at
least 5 sigma).
A run over ``--timeout`` seconds is stopped and reported as such. Sizes up to 7200 work; Aegean and
PyBDSF need more than an hour there on this 2-core machine (see shared/research/finder-anchors.md).

    .venv/bin/python bench/finders.py --sky realistic [--apps sep photutils] [--seed 1] [--json]

``--sky realistic`` is issue 15's map instead (``cirasa.finders.sky_model``: 800^2, 2,500/deg^2,
dN/dS ~ S^-1.6 down to 3 sigma, 10% extended, sources free to blend). Each finder runs as above and is
scored by the true peak SNR of what it should find (match radius one beam FWHM, ``compare.match``):
completeness at >= 5 sigma, in 5-10, 10-25 and > 25 sigma, and of extended sources >= 5 sigma; the
reliability of what it reported; its wall time. The last row, "ideal matched filter", is what a
perfect 5-sigma detector would reach on the same truth: Phi(s - 5) averaged over each bin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from cirasa.finders.catalog import Catalog
from cirasa.finders.compare import (
    DEFAULT_RADIUS_ARCSEC,
    SourceTable,
    compare,
    load_table,
    match,
    table_from_catalog,
)
from cirasa.finders.registry import APPS
from cirasa.finders.simulation import simulate_sky
from cirasa.finders.sky_model import RealisticSky, simulate_realistic_sky

RUNNABLE = [name for name, app in APPS.items() if app.runnable_without_container and not app.diagnostic]
PINNED = {
    k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
}


def run_finder(app: str, image: Path, out_dir: Path, timeout_s: float) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = APPS[app].build_argv(
        {"no-preview": True} if "no-preview" in APPS[app].describe() else {}, str(image)
    )
    started = time.perf_counter()
    with open(out_dir / "finder.log", "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=out_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **PINNED},
            start_new_session=True,
        )
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                return {"status": f"stopped after {timeout_s:g} s", "wall_s": timeout_s}
            time.sleep(0.05)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    if proc.returncode != 0:
        result["status"] = f"exit {proc.returncode}"
        return result
    catalog_file = next(out_dir.glob("catalog-*.json"))
    result["status"] = "ok"
    result["catalog"] = catalog_file
    return result


SIGMA = "\N{GREEK SMALL LETTER SIGMA}"
#: the realistic sky's bins of true peak SNR, [lo, hi): label -> (lo, hi, extended sources only)
BINS: dict[str, tuple[float, float, bool]] = {
    "snr>=5": (5.0, math.inf, False),
    "snr5-10": (5.0, 10.0, False),
    "snr10-25": (10.0, 25.0, False),
    "snr>25": (math.nextafter(25.0, math.inf), math.inf, False),
    "extended": (5.0, math.inf, True),
}
TITLES = {
    "snr>=5": f"found \N{GREATER-THAN OR EQUAL TO} 5{SIGMA}",
    "snr5-10": f"5\N{EN DASH}10{SIGMA}",
    "snr10-25": f"10\N{EN DASH}25{SIGMA}",
    "snr>25": f"> 25{SIGMA}",
    "extended": "extended",
}
IDEAL = "ideal matched filter"


def true_snr(reference: SourceTable) -> np.ndarray:
    """True peak / noise of every reference source (the truth CSV's ``snr`` column)."""
    if not reference.noise_jy:
        raise ValueError(f"{reference.label} has no noise level: cannot bin by SNR")
    snr: np.ndarray = reference.peak / reference.noise_jy
    return snr


def bin_masks(reference: SourceTable) -> dict[str, np.ndarray]:
    """Which reference sources fall in each bin (extended: any source not a point source, >= 5 sigma)."""
    snr = true_snr(reference)
    masks: dict[str, np.ndarray] = {}
    for label, (lo, hi, extended_only) in BINS.items():
        mask = (snr >= lo) & (snr < hi)
        masks[label] = mask & ~reference.point if extended_only else mask
    return masks


def score_bins(
    detections: SourceTable, reference: SourceTable, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
) -> dict[str, Any]:
    """Completeness per bin of true SNR (one-to-one match within the radius, ``compare.match``) and the
    reliability of the whole catalogue (``compare.compare``: matched detections / detections)."""
    pairs, _ = match(reference, detections, radius_arcsec)
    found = np.zeros(len(reference), dtype=bool)
    found[[r for r, _, _ in pairs]] = True
    whole = compare(detections, reference, radius_arcsec=radius_arcsec, snr_min=0.0)
    row: dict[str, Any] = {
        label: float(found[mask].mean()) if mask.any() else None
        for label, mask in bin_masks(reference).items()
    }
    row.update(
        detections=whole.n_detections,
        reliability=whole.reliability,
        false=whole.false,
        duplicates=whole.duplicates,
    )
    return row


def ideal_bins(reference: SourceTable, threshold_snr: float = 5.0) -> dict[str, float | None]:
    """The completeness of a perfect detector cutting at ``threshold_snr`` on the matched-filter output:
    a source of true peak SNR s is found with probability Phi(s - threshold) (the map's noise is already
    beam-correlated, so its peak pixel is the matched-filter output, in unit-variance noise)."""
    p_detect = ndtr(true_snr(reference) - threshold_snr)
    return {
        label: float(p_detect[mask].mean()) if mask.any() else None
        for label, mask in bin_masks(reference).items()
    }


def _score_finder(
    app: str, image: Path, out_dir: Path, reference: SourceTable, timeout: float
) -> dict[str, Any]:
    print(f"{app:>9} on {image.name} ({len(reference)} sources) ...", file=sys.stderr)
    result = run_finder(app, image, out_dir, timeout)
    row: dict[str, Any] = {"app": app, **{k: v for k, v in result.items() if k != "catalog"}}
    if result.get("catalog"):
        catalog = Catalog.model_validate_json(result["catalog"].read_text())
        row.update(score_bins(table_from_catalog(catalog, app), reference))
    return row


def realistic(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Issue 15's map (``RealisticSky()`` defaults unless --sizes / --densities), every app on it."""
    maps: list[dict[str, Any]] = []
    for size in args.sizes or [RealisticSky.size]:
        for density in args.densities or [RealisticSky.density_per_deg2]:
            sky = RealisticSky(size=size, density_per_deg2=density)
            name = f"realistic-{size}-{int(density)}"
            image, truth_file = work / f"{name}.fits", work / f"{name}.truth.csv"
            simulate_realistic_sky(image, sky, seed=args.seed, truth_path=truth_file)
            reference = load_table(truth_file)
            counts = {label: int(mask.sum()) for label, mask in bin_masks(reference).items()}
            rows = [
                _score_finder(app, image, work / f"{app}-{name}", reference, args.timeout)
                for app in args.apps
            ]
            rows.append({"app": IDEAL, "status": "ok", **ideal_bins(reference)})
            maps.append(
                {
                    "size": size,
                    "density": density,
                    "sources": len(reference),
                    "truth_per_bin": counts,
                    "rows": rows,
                }
            )
    return maps


def print_realistic(maps: list[dict[str, Any]]) -> None:
    def pct(value: Any) -> str:
        return f"{100 * value:.1f}%" if isinstance(value, float) else "-"

    for m in maps:
        bins = m["truth_per_bin"]
        print(
            f"\n{m['size']}² map, {m['density']:g}/deg², {m['sources']} sources; truth per bin: "
            + ", ".join(f"{TITLES[label].removeprefix('found ')} {n}" for label, n in bins.items())
        )
        header = ["finder", *TITLES.values(), "reliability", "time"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in m["rows"]:
            cells = [r["app"], *(pct(r.get(label)) for label in BINS), pct(r.get("reliability"))]
            wall = r.get("wall_s")
            cells.append("" if wall is None else f"{wall:.1f} s")
            if r["status"] != "ok":
                cells[-1] += f" ({r['status']})"
            print("| " + " | ".join(cells) + " |")


def campaign(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """The CIRASA paper's recipe at each size and density."""
    rows: list[dict[str, Any]] = []
    for size in args.sizes or [900, 1800]:
        for density in args.densities or [250, 2500]:
            image = work / f"sky-{size}-{int(density)}.fits"
            truth_file = work / f"sky-{size}-{int(density)}.truth.csv"
            truth = simulate_sky(image, size=size, density_per_deg2=density, seed=1, truth_path=truth_file)
            reference = load_table(truth_file)
            for app in args.apps:
                print(f"{app:>9} on {size}² at {density:g}/deg² ({len(truth)} sources) ...", file=sys.stderr)
                result = run_finder(app, image, work / f"{app}-{size}-{int(density)}", args.timeout)
                row: dict[str, Any] = {"app": app, "size": size, "density": density, "sources": len(truth)}
                row.update({k: v for k, v in result.items() if k != "catalog"})
                if result.get("catalog"):
                    catalog = Catalog.model_validate_json(result["catalog"].read_text())
                    score = compare(table_from_catalog(catalog, app), reference, snr_min=5.0)
                    row.update(
                        detections=score.n_detections,
                        completeness=score.completeness,
                        reliability=score.reliability,
                    )
                rows.append(row)
    return rows


def print_campaign(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'app':>9} {'map':>6} {'/deg²':>6} {'sources':>8} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} "
        f"{'found':>7} {'complete':>9} {'reliable':>9}  status"
    )
    for r in rows:
        pct = lambda v: f"{100 * v:8.2f}%" if isinstance(v, float) else f"{'-':>9}"  # noqa: E731
        print(
            f"{r['app']:>9} {r['size']:>6} {r['density']:>6g} {r['sources']:>8} {r.get('wall_s', 0):>8} "
            f"{r.get('cpu_s', '-'):>8} {r.get('peak_rss_mb', '-'):>8} {r.get('detections', '-'):>7} "
            f"{pct(r.get('completeness'))} {pct(r.get('reliability'))}  {r['status']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sky",
        choices=["campaign", "realistic"],
        default="campaign",
        help="campaign: the CIRASA paper's recipe; realistic: issue 15's crowded sky down to 3 sigma",
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="[default: 900 1800; realistic: 800]")
    parser.add_argument("--densities", type=float, nargs="+", help="[default: 250 2500; realistic: 2500]")
    parser.add_argument("--apps", nargs="+", default=RUNNABLE, choices=RUNNABLE)
    parser.add_argument("--seed", type=int, default=1, help="the realistic sky's seed")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per finder run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cirasa-bench-finders-"))
    if args.sky == "realistic":
        maps = realistic(args, work)
        print(json.dumps(maps, indent=2)) if args.json else print_realistic(maps)
        return
    rows = campaign(args, work)
    print(json.dumps(rows, indent=2)) if args.json else print_campaign(rows)


if __name__ == "__main__":
    main()
