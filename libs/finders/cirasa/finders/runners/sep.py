"""Source finding with sep (Source Extractor as a library).

``python -m cirasa.finders.runners.sep --image PATH --out-dir DIR`` writes the standard catalogue
products (``cirasa.finders.catalog``) and prints a one-line JSON summary. Bad input exits with code 2 and
one line on stderr; any other failure exits with code 1, also without a traceback.
"""

import os

# A job gets the cores the scheduler reserved: keep numerical libraries single-threaded unless the caller
# chose otherwise. This must run before numpy is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("VECLIB_MAXIMUM_THREADS", "1")
os.environ.setdefault("NUMEXPR_NUM_THREADS", "1")

import argparse
import json
import math
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from cirasa.finders.catalog import (
    Catalog,
    CatalogSource,
    pixel_angle_to_pa,
    write_preview_png,
    write_products,
)
from cirasa.finders.imaging import FWHM_PER_SIGMA
from cirasa.finders.runners.naming import add_image_name_argument, named_image

FINDER = "sep"
_FITS_SUFFIXES = (".fits", ".fit", ".fts")
_COMPRESSION_SUFFIXES = (".gz", ".fz", ".bz2")
_MIN_PIXSTACK = 300_000  # sep's default
_MESH_BEAMS = 16.0  # background mesh side in beam FWHM (see the spec's docstring)
_MESH_PX = (16, 256)  # bounds on the mesh side in pixels
_SEP_MESH_PX = 64  # sep's default mesh, used when the header has no beam


class InputError(Exception):
    """The input image cannot be used; the message is shown to the user as is."""


@dataclass(frozen=True)
class Image:
    data: np.ndarray  # 2-D, as stored (may hold NaN blanks)
    header: fits.Header
    wcs: WCS  # celestial, 2 axes matching ``data``


@dataclass(frozen=True)
class Options:
    seedthr: float = 5.0
    minarea: int = 1
    deblend_cont: float = 0.0001
    clean: bool = True


def _plane_axes_match(shape: tuple[int, ...], wcs: WCS) -> bool:
    """True when the non-degenerate data axes are exactly the celestial ones (FITS axes run reversed)."""
    fits_axes = {len(shape) - 1 - i for i, n in enumerate(shape) if n != 1}
    return fits_axes == {wcs.wcs.lng, wcs.wcs.lat}


def load_image(path: Path) -> Image:
    """First HDU whose data squeeze to 2-D, with its celestial WCS."""
    if not path.is_file():
        raise InputError(f"image not found: {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                for hdu in hdul:
                    if not hdu.is_image or hdu.data is None:
                        continue
                    data = np.asarray(hdu.data)
                    if np.squeeze(data).ndim == 2:
                        return _with_wcs(data, hdu.header)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"not a readable FITS file: {path.name} ({exc})") from None
    raise InputError(f"no 2-D image data in {path.name}")


def _with_wcs(data: np.ndarray, header: fits.Header) -> Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except Exception as exc:  # astropy raises several unrelated types for broken WCS keywords
        raise InputError(f"invalid WCS in the image header: {exc}") from None
    if not wcs.has_celestial:
        raise InputError("the image has no celestial WCS (RA/Dec axes)")
    if not _plane_axes_match(data.shape, wcs):
        raise InputError("the image's 2-D plane is not its RA/Dec plane")
    return Image(np.squeeze(data), header, wcs.celestial)


def _beam_area_px(header: fits.Header, pixel_deg: float) -> float | None:
    """Area of the Gaussian beam in pixels, or None without BMAJ/BMIN."""
    try:
        bmaj, bmin = float(header["BMAJ"]), float(header["BMIN"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (bmaj > 0 and bmin > 0):
        return None
    return math.pi / (4 * math.log(2)) * (bmaj / pixel_deg) * (bmin / pixel_deg)


def _beam_fwhm_px(header: fits.Header, pixel_deg: float) -> float | None:
    """The beam's FWHM in pixels (geometric mean of its axes), or None without BMAJ/BMIN."""
    area = _beam_area_px(header, pixel_deg)
    return None if area is None else math.sqrt(area * 4 * math.log(2) / math.pi)


def _subtract_background(
    data: np.ndarray, mask: np.ndarray | None, blank: np.ndarray, beam_fwhm_px: float | None
) -> float:
    """Subtract sep's background (mesh sized on the beam) in place; return the noise rms."""
    # a power of two: tiles of a map aligned on 64 px (cirasa.finders.tiling) then share its mesh cells
    mesh = _SEP_MESH_PX if beam_fwhm_px is None else 2 ** round(math.log2(_MESH_BEAMS * beam_fwhm_px))
    mesh = min(max(mesh, _MESH_PX[0]), _MESH_PX[1], max(data.shape))
    bkg = sep.Background(data, mask=mask, bw=mesh, bh=mesh)
    bkg.subfrom(data)
    rms = negative_rms(data[~blank])
    if not (math.isfinite(rms) and rms > 0):
        raise InputError("the image background rms is zero: no noise to set a threshold against")
    return rms


HALF_NORMAL_MEDIAN = 0.6744897501960817  # median of |x| over x < 0 for unit Gaussian noise


def negative_rms(residual: np.ndarray) -> float:
    """The noise rms from the pixels below the background only: sources add nothing there, whereas on a
    crowded map they inflate sep's ``globalrms`` (by 14% on issue 15's map), and the threshold with it.
    The median of their depth, not the mean of its square: the few deep holes a background fit leaves
    next to bright sources and near the image's edges barely move it (with a mean of squares, a tile
    of a map measured up to 42% more noise than the whole map there, and found fewer faint sources).
    Shared with the other finders through ``cirasa.finders.runners.support``."""
    below = residual[residual < 0].astype(np.float64)
    return float(np.median(-below)) / HALF_NORMAL_MEDIAN if below.size else 0.0


def _islands(segmap: np.ndarray, n: int) -> np.ndarray:
    """Island number (1-based, in order of first appearance) of each object: deblended objects whose
    segments touch (8-connectivity) share an island."""
    parent = list(range(n + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    neighbours = (
        (segmap[:, :-1], segmap[:, 1:]),
        (segmap[:-1, :], segmap[1:, :]),
        (segmap[:-1, :-1], segmap[1:, 1:]),
        (segmap[:-1, 1:], segmap[1:, :-1]),
    )
    for a, b in neighbours:
        touch = (a != b) & (a > 0) & (b > 0)
        if touch.any():
            for i, j in np.unique(np.stack([a[touch], b[touch]], axis=1), axis=0).tolist():
                parent[root(int(i))] = root(int(j))
    numbers: dict[int, int] = {}
    return np.array([numbers.setdefault(root(k), len(numbers) + 1) for k in range(1, n + 1)], dtype=int)


def find_sources(image: Image, options: Options) -> list[CatalogSource]:
    """Background-subtract, extract and convert sep objects to catalogue rows."""
    data = np.array(image.data, dtype=np.float32, order="C", copy=True)  # native byte order, writable
    blank = ~np.isfinite(data)
    mask = blank if blank.any() else None
    data[blank] = 0.0
    finite = data[~blank]
    if finite.size == 0:
        raise InputError("the image has no finite pixels")
    if finite.min() == finite.max():
        raise InputError("the image is constant: no noise to set a threshold against")
    pixel_deg = float(np.mean(proj_plane_pixel_scales(image.wcs)))
    pixel_arcsec = pixel_deg * 3600.0
    beam_fwhm_px = _beam_fwhm_px(image.header, pixel_deg)
    rms = _subtract_background(data, mask, blank, beam_fwhm_px)
    sep.set_extract_pixstack(max(_MIN_PIXSTACK, data.size // 10))
    # with a beam the map is already smoothed by it (the matched filter of a point source): no more filtering
    kernel = {} if beam_fwhm_px is None else {"filter_kernel": None}
    objects, segmap = sep.extract(
        data,
        thresh=options.seedthr,
        err=rms,
        mask=mask,
        minarea=options.minarea,
        deblend_cont=options.deblend_cont,
        clean=options.clean,
        segmentation_map=True,
        **kernel,
    )
    n = len(objects)
    if n == 0:
        return []

    x, y = objects["x"].astype(float), objects["y"].astype(float)
    ra, dec = image.wcs.all_pix2world(x, y, 0)
    pa = pixel_angle_to_pa(image.wcs, x, y, objects["theta"].astype(float))
    beam_area = _beam_area_px(image.header, pixel_deg)
    island = _islands(segmap, n)
    order = np.argsort(island, kind="stable")

    sources: list[CatalogSource] = []
    component_of: dict[int, int] = {}
    for i in order.tolist():
        obj = objects[i]
        isl = int(island[i])
        k = component_of[isl] = component_of.get(isl, 0) + 1
        peak = float(obj["peak"])
        int_flux = int_err = None
        if beam_area is not None:
            int_flux = float(obj["flux"]) / beam_area
            # noise is correlated over a beam: var(sum) ~ rms^2 * npix * beam_area
            int_err = rms * math.sqrt(float(obj["npix"]) / beam_area)
        sources.append(
            CatalogSource(
                source_id=f"S{isl}",
                component_id=f"S{isl}c{k}",
                island_id=isl,
                ra_deg=float(ra[i]),
                dec_deg=float(dec[i]),
                ra_err_arcsec=math.sqrt(max(float(obj["errx2"]), 0.0)) * pixel_arcsec,
                dec_err_arcsec=math.sqrt(max(float(obj["erry2"]), 0.0)) * pixel_arcsec,
                x_pix=float(x[i]),
                y_pix=float(y[i]),
                peak_flux_jy=peak,
                peak_flux_err_jy=rms,
                int_flux_jy=int_flux,
                int_flux_err_jy=int_err,
                maj_arcsec=FWHM_PER_SIGMA * float(obj["a"]) * pixel_arcsec,
                min_arcsec=FWHM_PER_SIGMA * float(obj["b"]) * pixel_arcsec,
                pa_deg=float(pa[i]),
                snr=peak / rms,
                finder=FINDER,
            )
        )
    return sources


def product_base(path: Path) -> str:
    """The image name without FITS / compression suffixes, reduced to characters safe in file names."""
    name = path.name
    for suffixes in (_COMPRESSION_SUFFIXES, _FITS_SUFFIXES):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip("._+-")
    return name or "image"


def run(image_path: Path, out_dir: Path, options: Options, preview: bool) -> dict[str, object]:
    image = load_image(image_path)
    catalog = Catalog(
        finder=FINDER,
        finder_version=str(sep.__version__),
        options={
            "seedthr": options.seedthr,
            "minarea": options.minarea,
            "deblend_cont": options.deblend_cont,
            "clean": options.clean,
        },
        image=image_path.name,
        sources=find_sources(image, options),
    )
    base = product_base(image_path)
    products = list(write_products(catalog, out_dir, base).values())
    if preview:
        png = out_dir / f"plot_{base}.png"
        products.append(write_preview_png(image.data, image.wcs.to_header(), catalog, png))
    return {"n_sources": len(catalog.sources), "products": [p.name for p in products]}


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sep_finder", description="Find sources in a FITS image with sep.")
    parser.add_argument("--image", type=Path, required=True, help="input FITS image")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for the products")
    parser.add_argument("--seedthr", type=_positive_float, default=5.0, help="threshold in background rms")
    parser.add_argument("--minarea", type=_positive_int, default=1, help="minimum pixels per object")
    parser.add_argument("--deblend-cont", type=_fraction, default=0.0001, help="deblending contrast ratio")
    parser.add_argument("--no-clean", action="store_true", help="skip cleaning of spurious detections")
    parser.add_argument("--no-preview", action="store_true", help="do not draw the preview PNG")
    add_image_name_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(args.seedthr, args.minarea, args.deblend_cont, not args.no_clean)
    try:
        image = named_image(args.image, args.image_name, args.out_dir)
        summary = run(image, args.out_dir, options, preview=not args.no_preview)
    except InputError as exc:
        print(f"sep_finder: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line for the job log, not a traceback
        message = " ".join(str(exc).split()) or "no details"
        print(f"sep_finder: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
