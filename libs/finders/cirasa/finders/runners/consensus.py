"""A consensus of several finders on one image (``cirasa.finders.consensus`` has the vote).

``python -m cirasa.finders.runners.consensus --image IMG --out-dir DIR [--finders sep,photutils]
[--min-votes N] [--solo-snr X] [--seedthr T] [--parallel P] [--image-name NAME] [--no-preview]`` runs each
finder's own runner as a subprocess, with the arguments its app builds (``App.build_argv``), in a
sub-directory of ``DIR`` named after it (its products, ``stdout.log`` and ``stderr.log`` stay there), up
to ``P`` at once (default: the job's cores), each with its share of the cores. It then merges their
catalogues and writes the standard products named after the image (``catalog-<base>.*``,
``ds9-<base>.reg``, ``plot_<base>.png``) and ``consensus-<base>.json`` (the provenance and the votes),
and prints a one-line JSON summary.

A finder that fails is reported on stderr (one line each) and the others still vote; when none succeeds
the runner exits 1. Bad input (an unknown finder, an unreadable image) exits 2 with one line on stderr.
"""

import cirasa.finders.runners.single_threaded  # noqa: F401 (first: one BLAS thread, before numpy)

# isort: split
import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cirasa.finders.catalog import Catalog, read_catalog_json
from cirasa.finders.consensus import DEFAULT_SOLO_SNR, build_consensus
from cirasa.finders.registry import OptionError
from cirasa.finders.runners.support import (
    JOB_CORES_ENV,
    InputError,
    add_io_arguments,
    job_cores,
    load_image,
    named_image,
    positive_float,
    positive_int,
    product_base,
    run_cli,
    write_standard_products,
)
from cirasa.finders.specs.consensus import (
    DEFAULT_FINDERS,
    DEFAULT_SEEDTHR,
    FINDER_APPS,
    THRESHOLD_OPTION,
    parse_finders,
)

PROG = "consensus_finder"
MAD_TO_SIGMA = 1.4826
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class Options:
    finders: tuple[str, ...]
    min_votes: int | None = None  # None: a majority of the finders that ran
    solo_snr: float = DEFAULT_SOLO_SNR
    seedthr: float = DEFAULT_SEEDTHR
    parallel: int = 1


@dataclass(frozen=True)
class FinderRun:
    finder: str
    catalog: Catalog | None
    error: str  # "" when it succeeded


def mad_noise(data: np.ndarray) -> float | None:
    """The image's noise from the median absolute deviation of its finite pixels (robust to sources)."""
    finite = np.asarray(data, dtype=np.float64)[np.isfinite(data)]
    if finite.size == 0:
        return None
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - np.median(finite))))
    return sigma if sigma > 0 else None


def finder_argv(finder: str, image: Path, seedthr: float) -> list[str]:
    """The finder's command through its app, with the threshold and without its own preview."""
    app = FINDER_APPS[finder]
    try:
        values = app.validate({THRESHOLD_OPTION[finder]: seedthr, "no-preview": True}).values
    except OptionError as exc:
        raise InputError(f"{finder}: {exc}") from None
    return app.build_argv(values, str(image.absolute()))  # the link: the products keep the image's name


def finder_env(cores: int) -> dict[str, str]:
    env = dict(os.environ)
    env[JOB_CORES_ENV] = str(cores)
    env.update({name: str(cores) for name in _THREAD_VARS})
    return env


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def run_finder(finder: str, argv: list[str], image: Path, out_dir: Path, cores: int) -> FinderRun:
    """Run one finder in ``out_dir/<finder>`` and read its catalogue; a failure is returned, not raised."""
    work = out_dir / finder
    work.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            argv, cwd=work, env=finder_env(cores), capture_output=True, text=True, check=False
        )
    except OSError as exc:
        return FinderRun(finder, None, f"cannot start: {exc}")
    (work / "stdout.log").write_text(done.stdout)
    (work / "stderr.log").write_text(done.stderr)
    if done.returncode != 0:
        return FinderRun(finder, None, f"exit {done.returncode}: {last_line(done.stderr)}")
    path = work / f"catalog-{product_base(image)}.json"
    try:
        return FinderRun(finder, read_catalog_json(path), "")
    except (OSError, ValueError) as exc:
        return FinderRun(finder, None, f"no readable catalogue {path.name}: {type(exc).__name__}")


def run_finders(image: Path, out_dir: Path, options: Options) -> list[FinderRun]:
    """All the finders, ``options.parallel`` at once, each with its share of the cores; in their order."""
    argvs = {f: finder_argv(f, image, options.seedthr) for f in options.finders}  # bad options stop here
    workers = max(1, min(options.parallel, len(options.finders)))
    share = max(1, options.parallel // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_finder, f, argvs[f], image, out_dir, share) for f in options.finders]
        return [future.result() for future in futures]


def run(image_path: Path, out_dir: Path, options: Options, preview: bool) -> dict[str, object]:
    image = load_image(image_path)  # bad input stops here, before any finder runs
    runs = run_finders(image_path, out_dir, options)
    failed = {r.finder: r.error for r in runs if r.catalog is None}
    for finder, error in failed.items():
        print(f"{PROG}: {finder} failed: {error}", file=sys.stderr, flush=True)
    catalogs = [r.catalog for r in runs if r.catalog is not None]
    if not catalogs:
        raise RuntimeError(f"no finder succeeded ({'; '.join(f'{f}: {e}' for f, e in failed.items())})")
    settings: dict[str, Any] = {"seedthr": options.seedthr, "requested": list(options.finders)}
    consensus = build_consensus(
        catalogs,
        min_votes=options.min_votes,
        solo_snr=options.solo_snr,
        image_noise_jy=mad_noise(image.data),
        image=image_path.name,
        options=settings,
        failed=failed,
    )
    products = write_standard_products(consensus.catalog, image, image_path, out_dir, preview)
    report = out_dir / f"consensus-{product_base(image_path)}.json"
    report.write_text(consensus.report.model_dump_json(indent=2) + "\n")
    return {
        "n_sources": len(consensus.catalog.sources),
        "n_merged": consensus.report.n_merged,
        "finders": {r.finder: len(r.catalog.sources) for r in runs if r.catalog is not None},
        "failed": sorted(failed),
        "products": [p.name for p in [*products, report]],
    }


def _finders(text: str) -> tuple[str, ...]:
    try:
        return parse_finders(text)
    except OptionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _votes(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0: a majority), got {text}")
    return value or None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Run several finders and vote on their sources.")
    add_io_arguments(parser)
    parser.add_argument("--finders", type=_finders, default=parse_finders(DEFAULT_FINDERS), help="a,b,...")
    parser.add_argument("--min-votes", type=_votes, default=None, help="finders needed (0: a majority)")
    parser.add_argument("--solo-snr", type=positive_float, default=DEFAULT_SOLO_SNR, help="bright solo SNR")
    parser.add_argument("--seedthr", type=positive_float, default=DEFAULT_SEEDTHR, help="finders' threshold")
    parser.add_argument("--parallel", type=positive_int, default=None, help="finders at once (job cores)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        finders=args.finders,
        min_votes=args.min_votes,
        solo_snr=args.solo_snr,
        seedthr=args.seedthr,
        parallel=args.parallel or job_cores() or 1,
    )
    image = named_image(args.image, args.image_name, args.out_dir)
    return run_cli(PROG, lambda: run(image, args.out_dir, options, preview=not args.no_preview))


if __name__ == "__main__":
    sys.exit(main())
