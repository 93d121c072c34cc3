"""bench/tiles: sep on a whole simulated map against sep on its overlapping tiles, run in parallel and merged.

    .venv/bin/python bench/tiles.py [--size 3600] [--per-side 4] [--overlap 64] [--density 2500]
                                    [--processes 2] [--seed 1] [--json]

Simulates a map with the CIRASA paper's recipe (``cirasa.finders.simulation``), runs the sep runner on it
as one process, exactly as a job would (BLAS/OpenMP threads pinned to 1), then splits it with
``cirasa.finders.tiling`` (``write_tile``), runs the sep runner on every tile, ``--processes`` at a time,
and merges the tiles' catalogues (``merge_tiles``). Prints the wall times (the tiled one includes the
split and the merge), the speed-up, the agreement both ways (the fraction of the whole-map sources with a
tiled source within half a beam, and of the tiled sources with a whole-map one, matched one to one by
``cirasa.finders.compare.match``) and the duplicates (pairs of merged sources closer than half a beam).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import httpx
from astropy.coordinates import search_around_sky
from astropy.io import fits

from cirasa.cli.runtime import in_process
from cirasa.common.logs import configure_logging
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.finders.catalog import Catalog, read_catalog_json
from cirasa.finders.compare import match, table_from_catalog
from cirasa.finders.registry import APPS
from cirasa.finders.simulation import simulate_sky
from cirasa.finders.tiling import ALIGN_PX, Tile, image_size, merge_tiles, plan_tiles, write_tile

PINNED = {
    k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
}


CAESAR = "/caesar/api/v1.0"


@dataclass
class Result:
    size: int
    density: float
    sources: int
    per_side: int
    overlap_px: int
    processes: int
    whole_s: float
    split_s: float
    find_s: float
    merge_s: float
    tiled_s: float
    tile_cpu_s: float  # the tiles' runs added up: what the split costs in all
    tile_max_s: float
    speedup: float
    whole_found: int
    tile_detections: int
    merged: int
    whole_in_tiled: float
    tiled_in_whole: float
    duplicates: int


def run_sep(image: Path, out_dir: Path) -> tuple[Catalog, float]:
    """The sep runner as its own process, as the platform runs it: its catalogue and its wall time."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = APPS["sep"].build_argv({"no-preview": True}, str(image))
    with open(out_dir / "finder.log", "wb") as log:
        done = subprocess.run(
            argv, cwd=out_dir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PINNED}
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"sep failed on {image.name} (exit {done.returncode}): see {out_dir / 'finder.log'}"
        )
    return read_catalog_json(next(out_dir.glob("catalog-*.json"))), time.perf_counter() - started


def run_tiled(
    image: Path, work: Path, per_side: int, overlap: int, processes: int
) -> tuple[Catalog, int, list[float]]:
    """Split, find on the tiles ``processes`` at a time, merge: the merged catalogue, the tiles' detections
    in all, and the wall times of the three steps, the tiles' runs added up and the longest run."""
    started = time.perf_counter()
    width, height = image_size(image)
    tiles = plan_tiles(width, height, per_side, overlap, ALIGN_PX)
    files = [write_tile(image, tile, work / f"tile{tile.index}.fits") for tile in tiles]
    split = time.perf_counter()

    def find(job: tuple[Tile, Path]) -> tuple[Tile, Catalog, float]:
        tile, path = job
        return tile, *run_sep(path, work / f"tile{tile.index}")

    with ThreadPoolExecutor(max_workers=processes) as pool:
        runs = list(pool.map(find, zip(tiles, files, strict=True)))
    parts = [(tile, catalog) for tile, catalog, _ in runs]
    run_times = [seconds for _, _, seconds in runs]
    found = time.perf_counter()
    merged = merge_tiles(parts, image_name=image.name)
    merged_at = time.perf_counter()
    detections = sum(len(catalog.sources) for _, catalog in parts)
    times = [split - started, found - split, merged_at - found, sum(run_times), max(run_times)]
    return merged, detections, times


def agreement(whole: Catalog, tiled: Catalog, radius_arcsec: float) -> tuple[float, float, int]:
    """Fractions of each catalogue matched in the other (one to one) and pairs of tiled sources that close."""
    a, b = table_from_catalog(whole, "whole"), table_from_catalog(tiled, "tiled")
    pairs, _ = match(a, b, radius_arcsec)
    i, j, _, _ = search_around_sky(b.coords(), b.coords(), radius_arcsec * u.arcsec)
    return len(pairs) / max(1, len(a)), len(pairs) / max(1, len(b)), int((i < j).sum())


def bench(args: argparse.Namespace, work: Path) -> Result:
    image = work / f"sky-{args.size}.fits"
    print(f"simulating a {args.size}² map at {args.density:g}/deg² ...", file=sys.stderr)
    truth = simulate_sky(image, size=args.size, density_per_deg2=args.density, seed=args.seed)
    radius = 0.5 * float(fits.getheader(image)["BMAJ"]) * 3600.0
    print(f"sep on the whole map ({len(truth)} sources) ...", file=sys.stderr)
    whole, whole_s = run_sep(image, work / "whole")
    print(f"sep on {args.per_side}x{args.per_side} tiles, {args.processes} at a time ...", file=sys.stderr)
    tiled, detections, (split_s, find_s, merge_s, tile_cpu_s, tile_max_s) = run_tiled(
        image, work / "tiles", args.per_side, args.overlap, args.processes
    )
    tiled_s = split_s + find_s + merge_s
    whole_in_tiled, tiled_in_whole, duplicates = agreement(whole, tiled, radius)
    return Result(
        size=args.size,
        density=args.density,
        sources=len(truth),
        per_side=args.per_side,
        overlap_px=args.overlap,
        processes=args.processes,
        whole_s=round(whole_s, 2),
        split_s=round(split_s, 2),
        find_s=round(find_s, 2),
        merge_s=round(merge_s, 2),
        tiled_s=round(tiled_s, 2),
        tile_cpu_s=round(tile_cpu_s, 2),
        tile_max_s=round(tile_max_s, 2),
        speedup=round(whole_s / tiled_s, 2),
        whole_found=len(whole.sources),
        tile_detections=detections,
        merged=len(tiled.sources),
        whole_in_tiled=whole_in_tiled,
        tiled_in_whole=tiled_in_whole,
        duplicates=duplicates,
    )


async def _ended(client: httpx.AsyncClient, url: str, done: tuple[str, ...]) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = (await client.get(url)).json()
        if body["state"] in done:
            return body
        await asyncio.sleep(0.05)


async def through_platform(image: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """The same two ways through the five services (in process, a local platform of ``--processes``
    cores): one sep job on the whole map, and a tiled request; wall times from submission to the
    job's SUCCESS and to the merged catalogue."""
    configure_logging("WARNING", json=False)
    settings = Settings(
        data_dir=work / "platform" / "data",
        jobs_dir=work / "platform" / "jobs",
        platforms=[PlatformConfig(name="local", cores=args.processes, memory_gib=64, max_duration_s=3600)],
    )
    async with in_process(settings) as client:
        up = await client.post(f"{CAESAR}/upload", files={"file": (image.name, image.read_bytes())})
        file_id, options = up.json()["uuid"], {"no-preview": True}
        started = time.perf_counter()
        body = {"app": "sep", "data_inputs": file_id, "job_inputs": options}
        job = (await client.post(f"{CAESAR}/job", json=body)).json()
        await _ended(client, f"{CAESAR}/job/{job['job_id']}/status", ("SUCCESS", "FAILURE", "ABORTED"))
        whole = time.perf_counter() - started
        started = time.perf_counter()
        body = {**body, "per_side": args.per_side, "overlap_px": args.overlap}
        tiled = (await client.post("/cirasa/api/v1/tiled", json=body)).json()
        await _ended(client, f"/cirasa/api/v1/tiled/{tiled['id']}", ("SUCCESS", "FAILURE"))
        merged = (await client.get(f"/cirasa/api/v1/tiled/{tiled['id']}/catalogue")).json()
        return {
            "platform_whole_s": round(whole, 2),
            "platform_tiled_s": round(time.perf_counter() - started, 2),
            "platform_merged": float(len(merged["sources"])),
        }


def report(r: Result) -> str:
    return "\n".join(
        [
            f"map {r.size}x{r.size} at {r.density:g}/deg²: {r.sources} sources simulated",
            f"whole: sep in one process                  {r.whole_s:8.2f} s  ({r.whole_found} found)",
            f"tiled: {r.per_side}x{r.per_side} tiles, {r.overlap_px}-px overlap, {r.processes} processes "
            f"{r.tiled_s:6.2f} s  (split {r.split_s:.2f} + find {r.find_s:.2f} + merge {r.merge_s:.2f})",
            f"tile runs: {r.tile_cpu_s:.2f} s added up, the longest {r.tile_max_s:.2f} s",
            f"speed-up                                   {r.speedup:8.2f}x",
            f"tile detections {r.tile_detections}, merged {r.merged}",
            f"whole-map sources with a tiled one within 0.5 beam: {100 * r.whole_in_tiled:.3f}%",
            f"tiled sources with a whole-map one within 0.5 beam: {100 * r.tiled_in_whole:.3f}%",
            f"duplicates (merged pairs closer than 0.5 beam):     {r.duplicates}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=3600, help="map side in pixels")
    parser.add_argument("--per-side", type=int, default=4, help="tiles per side")
    parser.add_argument("--overlap", type=int, default=64, help="overlap in pixels")
    parser.add_argument("--density", type=float, default=2500.0, help="sources per deg²")
    parser.add_argument("--processes", type=int, default=2, help="tiles found at a time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--through-platform",
        action="store_true",
        help="also run both ways through the five services (in process), to see what the platform adds",
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be >= 1")
    with tempfile.TemporaryDirectory(prefix="cirasa-bench-tiles-") as work:
        result = bench(args, Path(work))
        platform = {}
        if args.through_platform:
            print("the same through the platform ...", file=sys.stderr)
            platform = asyncio.run(through_platform(Path(work) / f"sky-{args.size}.fits", Path(work), args))
    out: dict[str, Any] = {**asdict(result), **platform}
    print(json.dumps(out, indent=2) if args.json else report(result))
    if platform and not args.json:
        speedup = platform["platform_whole_s"] / platform["platform_tiled_s"]
        print(
            f"through the platform ({args.processes} cores): whole job {platform['platform_whole_s']:.2f} s, "
            f"tiled request {platform['platform_tiled_s']:.2f} s ({speedup:.2f}x; "
            f"{int(platform['platform_merged'])} sources merged)"
        )
    return 0 if result.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
