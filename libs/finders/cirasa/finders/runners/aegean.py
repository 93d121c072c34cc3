"""Source finding with Aegean (AegeanTools): BANE for the background and noise maps, then Aegean's fits.

``python -m cirasa.finders.runners.aegean [options] --image PATH --out-dir DIR`` writes the standard
catalogue products (``cirasa.finders.catalog``), keeps Aegean's own component tables
(``<base>_aegean_comp.{csv,vot,reg}``) and prints a one-line JSON summary. Bad input exits with code 2
and one line on stderr.

Two defects of AegeanTools 2.3.5 are worked around here:

* **The multi-core hang.** BANE's worker pool has ``cores`` processes, but they wait at a barrier with
  one party per image stripe, and the stripe width is rounded down: an image can get one stripe more
  than there are workers, and then every worker waits forever (Aegean computing its own background with
  several cores hits this). Here BANE always runs first, with a stripe count that never exceeds its
  workers, and Aegean is given the maps, so it never runs BANE itself.
* **numpy >= 2.4** removed ``numpy.linalg.linalg``, whose ``LinAlgError`` AegeanTools.fitting still
  catches when a covariance matrix is singular (upstream issue PaulHancock/Aegean#228): the missing
  name is aliased to ``numpy.linalg`` before any fit runs.
"""

import cirasa.finders.runners.single_threaded  # noqa: F401 (first: one BLAS thread, before numpy)

# isort: split

import argparse
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import AegeanTools
import numpy as np
from AegeanTools import BANE
from AegeanTools.catalogs import save_catalog
from AegeanTools.models import ComponentSource
from AegeanTools.source_finder import SourceFinder
from AegeanTools.wcs_helpers import Beam as AegeanBeam
from astropy.io import fits

from cirasa.finders.catalog import Catalog, CatalogSource
from cirasa.finders.runners.support import (
    Beam,
    Image,
    InputError,
    add_common_arguments,
    beam_from,
    job_cores,
    load_image,
    lower_tail_noise,
    named_image,
    non_negative_int,
    pixel_scale_arcsec,
    positive_int,
    product_base,
    require_primary_hdu,
    run_cli,
    write_standard_products,
)

FINDER = "aegean"
PROG = "aegean_finder"
NATIVE_FORMATS = ("csv", "vot", "reg")


def restore_numpy_linalg_alias() -> None:
    """numpy >= 2.4 shim (see the module docstring): ``numpy.linalg.linalg`` names ``numpy.linalg``."""
    if not hasattr(np.linalg, "linalg"):
        np.linalg.__dict__["linalg"] = np.linalg


@dataclass(frozen=True)
class Options:
    seedthr: float = 5.0
    mergethr: float = 2.6
    bkgbox: int = 100
    bkggrid: int = 20
    fit_maxcomponents: int = 5
    ncores: int = 1
    save_bkgmap: bool = False
    save_rmsmap: bool = False
    logredir: bool = True
    beam_maj: float | None = None
    beam_min: float | None = None
    beam_pa: float | None = None


def bane_stripes(n_rows: int, cores: int, grid: int) -> int:
    """The largest stripe count up to ``cores`` for which BANE cuts the image into at most ``cores``
    stripes (BANE 2.3.5's width rounding can add one; its workers then deadlock at their barrier)."""
    for stripes in range(cores, 1, -1):
        width = int(max(n_rows / stripes / grid, 1) * grid)
        if math.ceil(n_rows / width) <= cores:
            return stripes
    return 1


@contextmanager
def aegean_log(path: Path | None) -> Iterator[None]:
    """Send AegeanTools' log to ``path`` instead of stderr (caesar-rest's default); None keeps stderr."""
    logger = logging.getLogger("AegeanTools")
    if path is None:
        yield
        return
    saved = list(logger.handlers)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(module)s.%(funcName)s: %(message)s"))
    for old in saved:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logging.captureWarnings(False)  # AegeanTools turned this on; keep warnings on stderr with the rest
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for old in saved:
            logger.addHandler(old)


def _check_noise(image: Image) -> None:
    finite = image.data[np.isfinite(image.data)]
    if finite.size == 0:
        raise InputError("the image has no finite pixels")
    if finite.min() == finite.max():
        raise InputError("the image is constant: no noise to set a threshold against")


def run_bane(
    image_path: Path, out_base: Path, options: Options, cores: int, n_rows: int
) -> tuple[Path, Path]:
    """Background and noise maps ``<out_base>_bkg.fits`` and ``<out_base>_rms.fits``."""
    stripes = bane_stripes(n_rows, cores, options.bkggrid)
    _bkg, rms = BANE.filter_image(
        str(image_path),
        out_base=str(out_base),
        step_size=(options.bkggrid, options.bkggrid),
        box_size=(options.bkgbox, options.bkgbox),
        cores=cores,
        nslice=stripes,
    )
    finite = rms[np.isfinite(rms)]
    if finite.size == 0 or not float(finite.max()) > 0:
        raise InputError("the image background rms is zero: no noise to set a threshold against")
    return Path(f"{out_base}_bkg.fits"), Path(f"{out_base}_rms.fits")


def rescale_rms(image: Image, bkg_path: Path, rms_path: Path) -> float:
    """Scale BANE's rms map in place so that its median is the lower-tail noise of the image minus BANE's
    background (BANE's clipped rms keeps the crowd's wings: 23.1 uJy for 20 on issue 15's map); BANE's
    variations across the map are kept. Returns the factor applied (1 when nothing can be measured)."""
    with fits.open(bkg_path) as bkg_hdus:
        background = np.squeeze(np.asarray(bkg_hdus[0].data, dtype=np.float64))
    with fits.open(rms_path) as rms_hdus:
        rms = np.asarray(rms_hdus[0].data, dtype=np.float64)
        header = rms_hdus[0].header.copy()
    if background.shape != image.data.shape:
        return 1.0
    # the spread of the lower tail, which does not depend on where BANE put the background
    # (``negative_rms`` of a map minus a background biased up by the crowd does)
    noise = lower_tail_noise(np.asarray(image.data, dtype=np.float64) - background, min_pixels=1)[1]
    finite = rms[np.isfinite(rms) & (rms > 0)]
    if not (noise > 0 and finite.size):
        return 1.0
    factor = noise / float(np.median(finite))
    fits.writeto(rms_path, (rms * factor).astype(np.float32), header, overwrite=True)
    return factor


def _half_max_overlap(faint: ComponentSource, bright: ComponentSource) -> bool:
    """Whether two components' half-maximum contours (as circles of the geometric-mean FWHM) overlap."""
    cos_dec = math.cos(math.radians(0.5 * (float(faint.dec) + float(bright.dec))))
    dx = (float(faint.ra) - float(bright.ra)) * cos_dec * 3600.0
    dy = (float(faint.dec) - float(bright.dec)) * 3600.0
    width = math.sqrt(abs(float(faint.a) * float(faint.b))) + math.sqrt(
        abs(float(bright.a) * float(bright.b))
    )
    return math.hypot(dx, dy) < 0.5 * width


def drop_overlapping(found: Sequence[Any]) -> list[Any]:
    """Without a component whose half-maximum contour overlaps that of a brighter component of its island.
    Aegean places one component per curvature summit, and the noise on a resolved source (2-4 beams)
    breaks it into several summits: the fit then splits it into overlapping broad Gaussians, or leaves
    summits beyond ``fit-maxcomponents`` unfitted at the beam's shape. Two sources that the beam
    separates lie more than half their widths apart, so they are kept."""
    islands: dict[int, list[ComponentSource]] = {}
    for comp in found:
        if isinstance(comp, ComponentSource):
            islands.setdefault(int(comp.island), []).append(comp)
    dropped: set[int] = set()
    for comps in islands.values():
        ranked = sorted(comps, key=lambda c: -float(c.peak_flux))
        for i, comp in enumerate(ranked):
            if any(_half_max_overlap(comp, brighter) for brighter in ranked[:i]):
                dropped.add(id(comp))
    return [comp for comp in found if id(comp) not in dropped]


def _value(value: Any, scale: float = 1.0) -> float | None:
    """Aegean marks what it could not measure with negative errors (-1) or NaN."""
    number = float(value)
    return number * scale if math.isfinite(number) and number >= 0 else None


def to_catalog_sources(found: list[ComponentSource], image: Image) -> list[CatalogSource]:
    """Aegean components to catalogue rows; an Aegean island is one source of one or more components."""
    components = sorted(
        (c for c in found if isinstance(c, ComponentSource)), key=lambda c: (c.island, c.source)
    )
    if not components:
        return []
    ra = np.array([c.ra for c in components], dtype=float)
    dec = np.array([c.dec for c in components], dtype=float)
    x, y = image.wcs.all_world2pix(ra, dec, 0)
    rows: list[CatalogSource] = []
    for i, comp in enumerate(components):
        island = int(comp.island)
        rms = float(comp.local_rms)
        peak = float(comp.peak_flux)
        rows.append(
            CatalogSource(
                source_id=f"S{island}",
                component_id=f"S{island}c{int(comp.source) + 1}",
                island_id=island,
                ra_deg=float(comp.ra),
                dec_deg=float(comp.dec),
                ra_err_arcsec=_value(comp.err_ra, 3600.0),
                dec_err_arcsec=_value(comp.err_dec, 3600.0),
                x_pix=float(x[i]),
                y_pix=float(y[i]),
                peak_flux_jy=peak,
                peak_flux_err_jy=_value(comp.err_peak_flux),
                int_flux_jy=float(comp.int_flux),
                int_flux_err_jy=_value(comp.err_int_flux),
                maj_arcsec=float(comp.a),
                maj_err_arcsec=_value(comp.err_a),
                min_arcsec=float(comp.b),
                min_err_arcsec=_value(comp.err_b),
                pa_deg=float(comp.pa) % 180.0,
                pa_err_deg=_value(comp.err_pa),
                snr=peak / rms if rms > 0 else None,
                finder=FINDER,
            )
        )
    return rows


def run(image_path: Path, out_dir: Path, options: Options, preview: bool) -> dict[str, object]:
    restore_numpy_linalg_alias()
    image = load_image(image_path)
    require_primary_hdu(image_path, image, FINDER)
    beam: Beam = beam_from(image.header, options.beam_maj, options.beam_min, options.beam_pa)
    _check_noise(image)
    granted = job_cores()
    cores = max(1, min(options.ncores, granted)) if granted else options.ncores
    out_dir.mkdir(parents=True, exist_ok=True)
    base = product_base(image_path)
    log_path = out_dir / f"{base}_aegean.log" if options.logredir else None

    with aegean_log(log_path):
        bkg_path, rms_path = run_bane(image_path, out_dir / base, options, cores, image.data.shape[0])
        try:
            rms_scale = rescale_rms(image, bkg_path, rms_path)
            found = SourceFinder().find_sources_in_image(
                str(image_path),
                innerclip=options.seedthr,
                outerclip=options.mergethr,
                max_summits=options.fit_maxcomponents,
                cores=1,  # fitting in 2.3.5 is serial; cores only matter for a background it computes
                bkgin=str(bkg_path),
                rmsin=str(rms_path),
                beam=AegeanBeam(*beam.as_tuple),
                cube_index=0,  # the first plane of a cube (None fails in 2.3.5)
                progress=False,
            )
            fitted = len(found)
            found = drop_overlapping(found)
        finally:
            if not options.save_bkgmap:
                bkg_path.unlink(missing_ok=True)
            if not options.save_rmsmap:
                rms_path.unlink(missing_ok=True)
        native: list[Path] = []
        if found:
            meta = {"PROGRAM": "Aegean", "PROGVER": AegeanTools.__version__, "FITSFILE": image_path.name}
            for fmt in NATIVE_FORMATS:
                save_catalog(str(out_dir / f"{base}_aegean.{fmt}"), found, meta=meta)
                native.append(out_dir / f"{base}_aegean_comp.{fmt}")

    provenance = {k: v for k, v in asdict(options).items() if not k.startswith("beam_")}
    provenance.update(
        ncores=cores,
        rms_scale=rms_scale,
        components_fitted=fitted,
        components_overlapping=fitted - len(found),
        bane_stripes=bane_stripes(image.data.shape[0], cores, options.bkggrid),
        beam_maj_arcsec=beam.maj_deg * 3600.0,
        beam_min_arcsec=beam.min_deg * 3600.0,
        beam_pa_deg=beam.pa_deg,
        beam_from=beam.source,
        pixel_arcsec=pixel_scale_arcsec(image.wcs),
    )
    catalog = Catalog(
        finder=FINDER,
        finder_version=str(AegeanTools.__version__),
        options=provenance,
        image=image_path.name,
        sources=to_catalog_sources(found, image),
    )
    products = write_standard_products(catalog, image, image_path, out_dir, preview)
    kept = [p for p in (bkg_path, rms_path, log_path) if p is not None and p.is_file()]
    return {
        "n_sources": len(catalog.sources),
        "products": [p.name for p in products],
        "native": [p.name for p in native + kept if p.is_file()],
    }


def _sigmas(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of sigmas >= 0, got {text}")
    return value


def _box(text: str) -> int:
    value = int(text)
    if value < 5:
        raise argparse.ArgumentTypeError(f"must be at least 5 pixels, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Find sources in a FITS image with Aegean.")
    parser.add_argument("--seedthr", type=_sigmas, default=5.0, help="seed threshold in sigmas")
    parser.add_argument("--mergethr", type=_sigmas, default=2.6, help="flood threshold in sigmas")
    parser.add_argument("--bkgbox", type=_box, default=100, help="BANE box size in pixels")
    parser.add_argument("--bkggrid", type=_box, default=20, help="BANE grid size in pixels")
    parser.add_argument("--fit-maxcomponents", type=non_negative_int, default=5, help="components per island")
    parser.add_argument("--ncores", type=positive_int, default=1, help="cores for BANE")
    parser.add_argument("--save-bkgmap", action="store_true", help="keep the background map")
    parser.add_argument("--save-rmsmap", action="store_true", help="keep the noise map")
    parser.add_argument("--no-logredir", action="store_true", help="log to stderr, not to a file")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        seedthr=args.seedthr,
        mergethr=args.mergethr,
        bkgbox=args.bkgbox,
        bkggrid=args.bkggrid,
        fit_maxcomponents=args.fit_maxcomponents,
        ncores=args.ncores,
        save_bkgmap=args.save_bkgmap,
        save_rmsmap=args.save_rmsmap,
        logredir=not args.no_logredir,
        beam_maj=args.beam_maj,
        beam_min=args.beam_min,
        beam_pa=args.beam_pa,
    )
    image = named_image(args.image, args.image_name, args.out_dir)
    return run_cli(PROG, lambda: run(image, args.out_dir, options, preview=not args.no_preview))


if __name__ == "__main__":
    sys.exit(main())
