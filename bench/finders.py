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
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cirasa.finders.catalog import Catalog
from cirasa.finders.compare import compare, load_table, table_from_catalog
from cirasa.finders.registry import APPS
from cirasa.finders.simulation import simulate_sky

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[900, 1800])
    parser.add_argument("--densities", type=float, nargs="+", default=[250, 2500])
    parser.add_argument("--apps", nargs="+", default=RUNNABLE, choices=RUNNABLE)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per finder run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cirasa-bench-finders-"))
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        for density in args.densities:
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
    if args.json:
        print(json.dumps(rows, indent=2))
        return
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


if __name__ == "__main__":
    main()
