"""What the Python-runner finders (aegean, pybdsf, photutils) share: the job's cores, the beam from the
header or the options, the command line, and the standard products.

The image loading, product naming and the noise from the pixels below the background (``negative_rms``)
come from ``sep_finder``, the first finder, so every finder reads images, names its products and measures
a crowded map's noise the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from cirasa.finders.catalog import Catalog, write_preview_png, write_products
from cirasa.finders.runners.naming import add_image_name_argument, named_image
from cirasa.finders.runners.sep import Image, InputError, load_image, negative_rms, product_base

__all__ = [
    "JOB_CORES_ENV",
    "Beam",
    "Image",
    "InputError",
    "add_common_arguments",
    "add_io_arguments",
    "beam_from",
    "finite_float",
    "header_float",
    "job_cores",
    "load_image",
    "lower_tail_noise",
    "named_image",
    "negative_rms",
    "non_negative_float",
    "non_negative_int",
    "pixel_scale_arcsec",
    "positive_float",
    "positive_int",
    "product_base",
    "require_primary_hdu",
    "run_cli",
    "write_standard_products",
]

#: the lower-tail quantiles the noise is measured at: -2 and -1 sigma of a Gaussian, and the fractions of
#: Gaussian noise below them
TAIL_Z = (-2.0, -1.0)
TAIL_FRACTIONS = (0.022750131948179195, 0.15865525393145707)


def lower_tail_noise(values: np.ndarray, min_pixels: int = 16) -> tuple[float, float]:
    """The background level and noise rms of a patch of sky from the lower tail of its pixel values only
    (the -2 and -1 sigma quantiles): sources only add flux, so on a crowded map they widen the upper side
    and raise a clipped rms (PyBDSF measured 29 uJy for 20, BANE 23.1), while the lower tail stays the
    noise's, and the spread between the quantiles does not depend on where a background was put. NaN for
    fewer than ``min_pixels`` finite pixels."""
    finite = values[np.isfinite(values)]
    if finite.size < max(min_pixels, 1):
        return math.nan, math.nan
    low, high = np.quantile(finite, TAIL_FRACTIONS)
    sigma = float(high - low) / (TAIL_Z[1] - TAIL_Z[0])
    return float(high) - TAIL_Z[1] * sigma, sigma


# Each finder module copies OMP_NUM_THREADS (the cores the local runner reserved for the job) here before
# it pins the numerical libraries to one thread; the finder then spends the cores on worker processes.
JOB_CORES_ENV = "CIRASA_JOB_CORES"


def job_cores() -> int | None:
    """The cores reserved for this job by the runner, or None when run by hand."""
    text = os.environ.get(JOB_CORES_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


@dataclass(frozen=True)
class Beam:
    """The restoring beam: FWHM axes in degrees, position angle in degrees east of north."""

    maj_deg: float
    min_deg: float
    pa_deg: float
    source: str  # "header" or "options", for the provenance

    @property
    def as_tuple(self) -> tuple[float, float, float]:
        return (self.maj_deg, self.min_deg, self.pa_deg)

    def area_px(self, pixel_deg: float) -> float:
        """Area of the Gaussian beam in pixels."""
        return math.pi / (4 * math.log(2)) * (self.maj_deg / pixel_deg) * (self.min_deg / pixel_deg)


def header_float(header: fits.Header, key: str) -> float | None:
    try:
        value = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def beam_from(
    header: fits.Header, maj_arcsec: float | None, min_arcsec: float | None, pa_deg: float | None
) -> Beam:
    """The beam given by the options (beam-maj [, beam-min, beam-pa]), else BMAJ/BMIN/BPA of the header.

    Options replace the header's beam as a whole; beam-min defaults to beam-maj (a circular beam) and
    beam-pa to the header's BPA, else 0.
    """
    header_pa = header_float(header, "BPA")
    if maj_arcsec:
        minor = min_arcsec or maj_arcsec
        if minor > maj_arcsec:
            raise InputError(f"beam-min ({minor:g} arcsec) is larger than beam-maj ({maj_arcsec:g} arcsec)")
        pa = pa_deg if pa_deg is not None else (header_pa or 0.0)
        return Beam(maj_arcsec / 3600.0, minor / 3600.0, pa, "options")
    if min_arcsec:
        raise InputError("beam-min was given without beam-maj: give both (arcsec)")
    bmaj, bmin = header_float(header, "BMAJ"), header_float(header, "BMIN")
    if bmaj is None or bmin is None or not (bmaj > 0 and bmin > 0):
        raise InputError(
            "no beam in the image header (BMAJ/BMIN): give it with the beam-maj and beam-min options (arcsec)"
        )
    pa = pa_deg if pa_deg is not None else (header_pa or 0.0)
    return Beam(max(bmaj, bmin), min(bmaj, bmin), pa, "header")


def require_primary_hdu(image_path: Path, image: Image, finder: str) -> None:
    """Aegean and PyBDSF read the primary HDU only: refuse a file whose image is in an extension."""
    header = fits.getheader(image_path, 0)
    if int(header.get("NAXIS", 0)) < 2 or int(header.get("NAXIS1", 0)) != image.data.shape[-1]:
        raise InputError(f"{finder} reads the image from the primary HDU; this file has it in an extension")


def pixel_scale_arcsec(wcs: WCS) -> float:
    return float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """--image, --out-dir, --no-preview and --image-name: what every runner takes."""
    parser.add_argument("--image", type=Path, required=True, help="input FITS image")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for the products")
    parser.add_argument("--no-preview", action="store_true", help="do not draw the preview PNG")
    add_image_name_argument(parser)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The I/O arguments, and the beam options (0 means: from the header)."""
    add_io_arguments(parser)
    parser.add_argument("--beam-maj", type=non_negative_float, default=None, help="beam FWHM major, arcsec")
    parser.add_argument("--beam-min", type=non_negative_float, default=None, help="beam FWHM minor, arcsec")
    parser.add_argument("--beam-pa", type=finite_float, default=None, help="beam position angle, deg")


def write_standard_products(
    catalog: Catalog, image: Image, image_path: Path, out_dir: Path, preview: bool
) -> list[Path]:
    """``catalog-<base>.{json,csv,vot}``, ``ds9-<base>.reg`` and, unless told not to, ``plot_<base>.png``."""
    base = product_base(image_path)
    products = list(write_products(catalog, out_dir, base).values())
    if preview:
        png = out_dir / f"plot_{base}.png"
        products.append(write_preview_png(image.data, image.wcs.to_header(), catalog, png))
    return products


def run_cli(prog: str, run: Callable[[], dict[str, object]]) -> int:
    """Run a finder: a one-line JSON summary on stdout and exit 0; exit 2 with one line on stderr for bad
    input; exit 1 with one line (no traceback) for any other failure."""
    try:
        summary = run()
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line for the job log, not a traceback
        message = " ".join(str(exc).split()) or "no details"
        print(f"{prog}: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0
