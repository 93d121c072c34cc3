"""Source finding with photutils: a 2-D background, detection on the beam-smoothed image, deblending and
segment moments.

``python -m cirasa.finders.runners.photutils [options] --image PATH --out-dir DIR`` writes the standard
catalogue products, keeps photutils' own table (``<base>_photutils.ecsv``) and segmentation map
(``<base>_photutils_segm.fits``) and prints a one-line JSON summary. Bad input exits with code 2 and one
line on stderr.

photutils measures segments, it does not fit Gaussians: positions and shapes are the first and second
moments of the background-subtracted (not the convolved) pixels, the peak is the brightest pixel, and the
errors are those of a Gaussian of that shape and signal-to-noise (Condon 1997, PASP 109, 166).

The threshold is ``seedthr`` times the noise measured from the pixels below the background
(``support.negative_rms``, as sep does), one value for the map. The map is searched as it is: a radio map
is already convolved with its beam, the matched filter of a point source; ``kernel-beams`` smooths it
further by the beam scaled by that factor, and the noise is then measured on the smoothed map. The
background box is ``bkgbox``, or by default about 16 beam FWHM (a power of two). A deblended component
must have a third of a beam's area in pixels (and at least ``minarea``). Why these defaults: the spec
(``cirasa.finders.specs.photutils``).
"""

import cirasa.finders.runners.single_threaded  # noqa: F401 (first: one BLAS thread, before numpy)

# isort: split

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import photutils
from astropy.convolution import Gaussian2DKernel, convolve
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from photutils.background import Background2D, SExtractorBackground
from photutils.segmentation import SegmentationImage, SourceCatalog, deblend_sources, detect_sources

from cirasa.finders.catalog import Catalog, CatalogSource, pa_to_pixel_angle, pixel_angle_to_pa
from cirasa.finders.imaging import FWHM_PER_SIGMA
from cirasa.finders.runners.support import (
    Beam,
    Image,
    InputError,
    add_common_arguments,
    beam_from,
    job_cores,
    load_image,
    named_image,
    negative_rms,
    non_negative_int,
    pixel_scale_arcsec,
    positive_float,
    positive_int,
    product_base,
    run_cli,
    write_standard_products,
)

FINDER = "photutils"
PROG = "photutils_finder"
# photutils 3 counts sigma-clipped pixels as excluded; on crowded radio maps 18-36% of every box is
# clipped, so its default (10%) rejects every box. Half the box must remain.
EXCLUDE_PERCENTILE = 50.0
KERNEL_SIGMAS = 3.0  # the smoothing kernel reaches this many sigmas along its major axis
MAX_PA_ERROR_DEG = 90.0  # a position angle is defined modulo 180 deg
# photutils deblends in parallel through "spawn" workers, each re-importing this module (2-3 s): worth it
# only when serial deblending takes longer than that (~1,000 segments/s on one core).
PARALLEL_DEBLEND_MIN_SEGMENTS = 5000
BOX_BEAMS = 16.0  # default background box side in beam FWHM (see the spec's docstring)
BOX_PX = (16, 256)  # bounds on the default box side in pixels
DEBLEND_BEAM_FRACTION = 1.0 / 3.0  # a deblended component covers at least this fraction of a beam


@dataclass(frozen=True)
class Options:
    seedthr: float = 5.0
    minarea: int = 1
    deblend: bool = True
    deblend_cont: float = 0.0001
    deblend_nlevels: int = 64
    kernel_beams: float = 0.0
    bkgbox: int = 0
    bkgfilter: int = 3
    beam_maj: float | None = None
    beam_min: float | None = None
    beam_pa: float | None = None


@dataclass(frozen=True)
class Maps:
    """The background-subtracted image (blanks set to 0), its rms map, the blank-pixel mask and the noise
    (the rms measured from the pixels below the background, which the rms map holds everywhere)."""

    data: np.ndarray
    rms: np.ndarray
    blank: np.ndarray
    noise: float


def background_box(options: Options, beam: Beam, image: Image) -> int:
    """The background box side in pixels: ``bkgbox``, or (0) about ``BOX_BEAMS`` beam FWHM rounded to a
    power of two, bounded to ``BOX_PX`` and to the image."""
    box = options.bkgbox
    if box <= 0:
        fwhm_px = math.sqrt(beam.maj_deg * beam.min_deg) * 3600.0 / pixel_scale_arcsec(image.wcs)
        box = 2 ** round(math.log2(BOX_BEAMS * fwhm_px))
        box = min(max(box, BOX_PX[0]), BOX_PX[1])
    return min(box, *image.data.shape)


def subtract_background(image: Image, options: Options, box: int) -> Maps:
    data = np.array(image.data, dtype=np.float64)
    blank = ~np.isfinite(data)
    finite = data[~blank]
    if finite.size == 0:
        raise InputError("the image has no finite pixels")
    if finite.min() == finite.max():
        raise InputError("the image is constant: no noise to set a threshold against")
    try:
        bkg = Background2D(
            data,
            (box, box),
            mask=blank if blank.any() else None,
            filter_size=(options.bkgfilter, options.bkgfilter),
            # sep's (and SExtractor's) mode estimate, 2.5 median - 1.5 mean: crowded sources skew every
            # box, and its median sat 0.18 sigma above the sky on issue 15's map (the mode 0.08)
            bkg_estimator=SExtractorBackground(),
            exclude_percentile=EXCLUDE_PERCENTILE,
        )
    except ValueError as exc:  # e.g. every box mostly blank
        raise InputError(f"cannot estimate the background: {exc}") from None
    data -= bkg.background
    data[blank] = 0.0
    rms = negative_rms(data[~blank])
    if not (math.isfinite(rms) and rms > 0):
        raise InputError("the image background rms is zero: no noise to set a threshold against")
    return Maps(data, np.broadcast_to(rms, data.shape), blank, rms)  # one value, viewed as a map


def beam_kernel(beam: Beam, image: Image, scale: float) -> Gaussian2DKernel:
    """The beam, its axes times ``scale``, as a normalised kernel oriented on the pixel grid at the image
    centre."""
    pixel_deg = pixel_scale_arcsec(image.wcs) / 3600.0
    sigma_maj = scale * beam.maj_deg / pixel_deg / FWHM_PER_SIGMA
    sigma_min = scale * beam.min_deg / pixel_deg / FWHM_PER_SIGMA
    cy, cx = (n / 2.0 for n in image.data.shape)
    angle = pa_to_pixel_angle(image.wcs, np.array([cx]), np.array([cy]), np.array([beam.pa_deg]))
    size = 2 * math.ceil(KERNEL_SIGMAS * sigma_maj) + 1
    kernel = Gaussian2DKernel(sigma_maj, sigma_min, theta=math.radians(float(angle[0])), x_size=size)
    kernel.normalize()
    return kernel


def island_numbers(parent: SegmentationImage, children: SegmentationImage) -> np.ndarray:
    """Island (1-based, in label order) of each deblended segment: the detection segment it came from."""
    inside = children.data > 0
    parent_of = np.zeros(int(children.data.max()) + 1, dtype=np.int64)
    parent_of[children.data[inside]] = parent.data[inside]
    parents = parent_of[np.asarray(children.labels)]
    numbers: dict[int, int] = {}
    return np.array([numbers.setdefault(int(p), len(numbers) + 1) for p in parents], dtype=np.int64)


def _rho(
    snr: np.ndarray, maj: np.ndarray, mnr: np.ndarray, noise: float, a_maj: float, a_min: float
) -> np.ndarray:
    """Condon's effective signal-to-noise of a Gaussian (FWHM axes ``maj``, ``mnr``) in noise correlated
    over ``noise`` (the beam FWHM), for the exponents of the parameter in question."""
    shape = (
        (maj * mnr / (4.0 * noise**2)) * (1 + (noise / maj) ** 2) ** a_maj * (1 + (noise / mnr) ** 2) ** a_min
    )
    rho: np.ndarray = np.sqrt(shape) * snr
    return rho


def to_catalog_sources(
    cat: SourceCatalog, islands: np.ndarray, maps: Maps, image: Image, beam: Beam
) -> list[CatalogSource]:
    if len(islands) == 0:
        return []
    pixel_deg = pixel_scale_arcsec(image.wcs) / 3600.0
    pixel_arcsec = pixel_deg * 3600.0
    beam_area = beam.area_px(pixel_deg)
    beam_arcsec = math.sqrt(beam.maj_deg * beam.min_deg) * 3600.0

    x = np.asarray(cat.x_centroid, dtype=float)
    y = np.asarray(cat.y_centroid, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    peak = np.asarray(cat.max_value, dtype=float)
    rms = maps.rms[np.asarray(cat.max_value_yindex, dtype=int), np.asarray(cat.max_value_xindex, dtype=int)]
    snr = peak / rms
    area = np.asarray(cat.area.value, dtype=float)
    flux = np.asarray(cat.segment_flux, dtype=float) / beam_area
    flux_err = rms * np.sqrt(area / beam_area)
    maj = np.asarray(cat.semimajor_axis.value, dtype=float) * FWHM_PER_SIGMA * pixel_arcsec
    mnr = np.asarray(cat.semiminor_axis.value, dtype=float) * FWHM_PER_SIGMA * pixel_arcsec
    pa = np.full(len(x), np.nan)
    angle = np.radians(np.asarray(cat.orientation.value, dtype=float))
    pa[keep] = pixel_angle_to_pa(image.wcs, x[keep], y[keep], angle[keep])
    ra, dec = np.full(len(x), np.nan), np.full(len(x), np.nan)
    ra[keep], dec[keep] = image.wcs.all_pix2world(x[keep], y[keep], 0)

    with np.errstate(divide="ignore", invalid="ignore"):
        rho_x = _rho(snr, maj, mnr, beam_arcsec, 2.5, 0.5)  # along the major axis, and its length
        rho_y = _rho(snr, maj, mnr, beam_arcsec, 0.5, 2.5)  # along the minor axis, its length, the angle
        err_x = math.sqrt(2.0) * maj / FWHM_PER_SIGMA / rho_x
        err_y = math.sqrt(2.0) * mnr / FWHM_PER_SIGMA / rho_y
        phi = np.radians(np.nan_to_num(pa))
        ra_err = np.hypot(err_x * np.sin(phi), err_y * np.cos(phi))
        dec_err = np.hypot(err_x * np.cos(phi), err_y * np.sin(phi))
        maj_err = math.sqrt(2.0) * maj / rho_x
        min_err = math.sqrt(2.0) * mnr / rho_y
        pa_err = np.degrees(math.sqrt(2.0) / rho_y * 2.0 * maj * mnr / (maj**2 - mnr**2))
    pa_err = np.minimum(np.abs(pa_err), MAX_PA_ERROR_DEG)

    order = np.argsort(islands, kind="stable")
    rows: list[CatalogSource] = []
    count: dict[int, int] = {}
    for i in order.tolist():
        if not keep[i]:
            continue
        island = int(islands[i])
        k = count[island] = count.get(island, 0) + 1
        rows.append(
            CatalogSource(
                source_id=f"S{island}",
                component_id=f"S{island}c{k}",
                island_id=island,
                ra_deg=float(ra[i]),
                dec_deg=float(dec[i]),
                ra_err_arcsec=float(ra_err[i]),
                dec_err_arcsec=float(dec_err[i]),
                x_pix=float(x[i]),
                y_pix=float(y[i]),
                peak_flux_jy=float(peak[i]),
                peak_flux_err_jy=float(rms[i]),
                int_flux_jy=float(flux[i]),
                int_flux_err_jy=float(flux_err[i]),
                maj_arcsec=float(maj[i]),
                maj_err_arcsec=float(maj_err[i]),
                min_arcsec=float(mnr[i]),
                min_err_arcsec=float(min_err[i]),
                pa_deg=float(pa[i]),
                pa_err_deg=float(pa_err[i]),
                snr=float(snr[i]),
                finder=FINDER,
            )
        )
    return rows


def write_native(
    cat: SourceCatalog | None, segm: SegmentationImage | None, image: Image, out_dir: Path, base: str
) -> list[Path]:
    """photutils' own table (ECSV) and the segmentation map (tile-compressed FITS, with the WCS)."""
    if cat is None or segm is None:
        return []
    table_path = out_dir / f"{base}_photutils.ecsv"
    segm_path = out_dir / f"{base}_photutils_segm.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        cat.to_table().write(table_path, format="ascii.ecsv", overwrite=True)
        hdu = fits.CompImageHDU(segm.data.astype(np.int32), header=image.wcs.to_header())
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(segm_path, overwrite=True)
    return [table_path, segm_path]


def deblend_min_pixels(options: Options, beam: Beam, image: Image) -> int:
    """The fewest pixels a deblended component may have: a third of the beam's area (the part of a
    point source within 70% of its peak), and at least ``minarea``."""
    area = beam.area_px(pixel_scale_arcsec(image.wcs) / 3600.0)
    return max(options.minarea, round(area * DEBLEND_BEAM_FRACTION))


def segment(
    detection: np.ndarray, noise: float, maps: Maps, options: Options, deblend_pixels: int, cores: int
) -> tuple[SegmentationImage | None, SegmentationImage | None]:
    """The detection segments (islands) above ``seedthr`` times ``noise`` on the detection image, and the
    deblended ones (the same without deblending), or (None, None) when nothing is above it."""
    segm = detect_sources(detection, options.seedthr * noise, n_pixels=options.minarea, mask=maps.blank)
    if segm is None or not options.deblend:
        return segm, segm
    processes = cores if segm.n_labels >= PARALLEL_DEBLEND_MIN_SEGMENTS else 1
    children = deblend_sources(
        detection,
        segm,
        n_pixels=deblend_pixels,
        n_levels=options.deblend_nlevels,
        contrast=options.deblend_cont,
        n_processes=processes,
        progress_bar=False,
    )
    return segm, children


def run(image_path: Path, out_dir: Path, options: Options, preview: bool) -> dict[str, object]:
    image = load_image(image_path)
    beam = beam_from(image.header, options.beam_maj, options.beam_min, options.beam_pa)
    box = background_box(options, beam, image)
    maps = subtract_background(image, options, box)
    cores = job_cores() or 1
    detection, noise = maps.data, maps.noise
    if options.kernel_beams > 0:  # smoothing lowers the noise too: the threshold is on the smoothed map's
        kernel = beam_kernel(beam, image, options.kernel_beams)
        detection = convolve(maps.data, kernel, normalize_kernel=False, boundary="extend")
        noise = negative_rms(detection[~maps.blank])
    deblend_pixels = deblend_min_pixels(options, beam, image)
    segm, children = segment(detection, noise, maps, options, deblend_pixels, cores)
    cat: SourceCatalog | None = None
    islands = np.empty(0, dtype=np.int64)
    if segm is not None and children is not None:
        islands = island_numbers(segm, children)
        cat = SourceCatalog(maps.data, children, mask=maps.blank)

    provenance: dict[str, Any] = {k: v for k, v in asdict(options).items() if not k.startswith("beam_")}
    provenance.update(
        exclude_percentile=EXCLUDE_PERCENTILE,
        bkgbox_px=box,
        noise_jy=maps.noise,
        detection_noise_jy=noise,
        deblend_min_pixels=deblend_pixels,
        cores=cores,
        beam_maj_arcsec=beam.maj_deg * 3600.0,
        beam_min_arcsec=beam.min_deg * 3600.0,
        beam_pa_deg=beam.pa_deg,
        beam_from=beam.source,
        pixel_arcsec=pixel_scale_arcsec(image.wcs),
    )
    catalog = Catalog(
        finder=FINDER,
        finder_version=str(photutils.__version__),
        options=provenance,
        image=image_path.name,
        sources=[] if cat is None else to_catalog_sources(cat, islands, maps, image, beam),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    native = write_native(cat, children, image, out_dir, product_base(image_path))
    products = write_standard_products(catalog, image, image_path, out_dir, preview)
    return {
        "n_sources": len(catalog.sources),
        "products": [p.name for p in products],
        "native": [p.name for p in native],
    }


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _kernel_beams(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 3.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3 beams, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Find sources in a FITS image with photutils.")
    parser.add_argument("--seedthr", type=positive_float, default=5.0, help="threshold in background rms")
    parser.add_argument("--minarea", type=positive_int, default=1, help="minimum pixels per source")
    parser.add_argument("--deblend-cont", type=_fraction, default=0.0001, help="deblending contrast")
    parser.add_argument("--deblend-nlevels", type=positive_int, default=64, help="deblending levels")
    parser.add_argument("--no-deblend", action="store_true", help="do not deblend")
    parser.add_argument("--kernel-beams", type=_kernel_beams, default=0.0, help="smoothing FWHM in beams")
    parser.add_argument("--bkgbox", type=non_negative_int, default=0, help="background box, px (0: 16 beams)")
    parser.add_argument("--bkgfilter", type=positive_int, default=3, help="background filter in boxes")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        seedthr=args.seedthr,
        minarea=args.minarea,
        deblend=not args.no_deblend,
        deblend_cont=args.deblend_cont,
        deblend_nlevels=args.deblend_nlevels,
        kernel_beams=args.kernel_beams,
        bkgbox=args.bkgbox,
        bkgfilter=args.bkgfilter,
        beam_maj=args.beam_maj,
        beam_min=args.beam_min,
        beam_pa=args.beam_pa,
    )
    image = named_image(args.image, args.image_name, args.out_dir)
    return run_cli(PROG, lambda: run(image, args.out_dir, options, preview=not args.no_preview))


if __name__ == "__main__":
    sys.exit(main())
