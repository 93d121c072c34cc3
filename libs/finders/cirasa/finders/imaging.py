"""Synthetic radio images with a known truth list, for tests and benchmarks.

Pixel coordinates are 0-based (numpy / astropy ``origin=0``); FITS and DS9 count from 1.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548...
CENTRE_RA_DEG = 150.0
CENTRE_DEC_DEG = -30.0
BORDER_PX = 10
MIN_SEPARATION_BEAMS = 3.0
_CUTOUT_SIGMAS = 5.0
_BATCH = 256
_MAX_CONSECUTIVE_REJECTS = 20_000
_JAMMING_COVERAGE = 0.547  # area fraction where random sequential placement of disks jams


@dataclass(frozen=True)
class TruthSource:
    """One injected source; ``flux_jy`` is the integrated flux (equal to ``peak_jy`` for a point source)."""

    id: int
    x: float
    y: float
    ra: float
    dec: float
    peak_jy: float
    flux_jy: float
    noise_jy: float | None = field(default=None, kw_only=True)  # the map's noise rms (the compare's SNR cut)


def synthetic_header(size: int, beam_arcsec: float, pixel_arcsec: float) -> fits.Header:
    """A 2-D SIN-projected header centred on (150, -30) deg with the beam and frequency keywords."""
    header = fits.Header()
    header["CTYPE1"] = "RA---SIN"
    header["CTYPE2"] = "DEC--SIN"
    header["CRVAL1"] = CENTRE_RA_DEG
    header["CRVAL2"] = CENTRE_DEC_DEG
    header["CRPIX1"] = (size + 1) / 2.0
    header["CRPIX2"] = (size + 1) / 2.0
    header["CDELT1"] = -pixel_arcsec / 3600.0
    header["CDELT2"] = pixel_arcsec / 3600.0
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["RADESYS"] = "FK5"
    header["EQUINOX"] = 2000.0
    header["BMAJ"] = beam_arcsec / 3600.0
    header["BMIN"] = beam_arcsec / 3600.0
    header["BPA"] = 0.0
    header["BUNIT"] = "JY/BEAM"
    header["FREQ"] = 1.4e9
    header["RESTFRQ"] = 1.4e9
    header["OBJECT"] = "CIRASA synthetic"
    return header


def place_sources(rng: np.random.Generator, n: int, size: int, min_sep_px: float) -> np.ndarray:
    """``n`` source centres (x, y) by random sequential addition: uniform candidates, each kept when it is
    ``min_sep_px`` or more from every centre kept before it; centres stay ``BORDER_PX`` from the border.

    Candidates come in batches of ``_BATCH``. A grid of cells ``min_sep_px / sqrt(2)`` wide holds at most
    one kept centre each, so a candidate is checked against the 5 x 5 cells around it in one vectorised
    step; conflicts inside a batch are then settled in candidate order, which keeps the result that of
    one-at-a-time placement. Placement gives up once ``_MAX_CONSECUTIVE_REJECTS`` candidates in a row are
    rejected, or at once when the request is denser than random placement can ever reach.
    """
    lo, hi = float(BORDER_PX), float(size - 1 - BORDER_PX)
    if n == 0:
        return np.empty((0, 2))
    if hi <= lo:
        raise ValueError(
            f"image of {size} px is too small: sources must stay >= {BORDER_PX} px from the border"
        )
    side = hi - lo + min_sep_px
    if n * math.pi * (min_sep_px / 2.0) ** 2 > _JAMMING_COVERAGE * side * side:
        raise ValueError(_crowded(n, size, min_sep_px, placed=None))
    if min_sep_px <= 0:
        return rng.uniform(lo, hi, size=(n, 2))
    cell = min_sep_px / math.sqrt(2.0)
    pad = 2
    ncell = math.ceil((hi - lo) / cell) + 1 + 2 * pad
    grid = np.full((ncell, ncell), -1, dtype=np.int32)  # index of the centre kept in each cell
    xs, ys = np.zeros(n), np.zeros(n)
    di = np.repeat(np.arange(-pad, pad + 1), 2 * pad + 1)
    dj = np.tile(np.arange(-pad, pad + 1), 2 * pad + 1)
    min_sep2 = min_sep_px * min_sep_px
    placed = 0
    rejects = 0
    while placed < n:
        cand = rng.uniform(lo, hi, size=(_BATCH, 2))
        cx, cy = cand[:, 0], cand[:, 1]
        ci = ((cand - lo) // cell).astype(np.int64) + pad
        neighbours = grid[ci[:, 0, None] + di[None, :], ci[:, 1, None] + dj[None, :]]  # (batch, 25)
        d2 = (xs[neighbours] - cx[:, None]) ** 2 + (ys[neighbours] - cy[:, None]) ** 2
        free = ~((neighbours >= 0) & (d2 < min_sep2)).any(axis=1)
        kept = np.flatnonzero(_first_come(cx, cy, free, min_sep2))[: n - placed]
        if len(kept) == 0:
            rejects += _BATCH
        else:
            rejects = int(_BATCH - 1 - kept[-1])  # rejected candidates after the last kept one
            index = np.arange(placed, placed + len(kept))
            xs[index], ys[index] = cx[kept], cy[kept]
            cells = ci[kept]
            grid[cells[:, 0], cells[:, 1]] = index
            placed += len(kept)
        if rejects >= _MAX_CONSECUTIVE_REJECTS:
            raise ValueError(_crowded(n, size, min_sep_px, placed=placed))
    return np.column_stack([xs, ys])


def _first_come(x: np.ndarray, y: np.ndarray, free: np.ndarray, min_sep2: float) -> np.ndarray:
    """Of the ``free`` candidates of one batch, those not closer than ``sqrt(min_sep2)`` to an earlier
    one that is kept (as if they had been placed one at a time)."""
    keep = free.copy()
    survivors = np.flatnonzero(free)
    if len(survivors) > 1:
        sx, sy = x[survivors], y[survivors]
        close = (sx[:, None] - sx[None, :]) ** 2 + (sy[:, None] - sy[None, :]) ** 2 < min_sep2
        order = np.arange(len(survivors))
        close &= order[:, None] > order[None, :]  # close[i, j]: survivor i meets an earlier one j
        for i in np.flatnonzero(close.any(axis=1)).tolist():
            if keep[survivors[close[i]]].any():
                keep[survivors[i]] = False
    return keep


def _crowded(n: int, size: int, min_sep_px: float, placed: int | None) -> str:
    got = "" if placed is None else f" (placed {placed} before running out of room)"
    return (
        f"cannot place {n} sources {min_sep_px:.1f} px apart and >= {BORDER_PX} px from the border "
        f"in a {size}x{size} image{got}: ask for fewer sources per unit area (fewer sources, a lower "
        "density, or a larger image for the same number of sources) or a smaller separation (a smaller beam)"
    )


def _add_gaussian(
    image: np.ndarray, x: float, y: float, peak: float, sx: float, sy: float, theta: float
) -> None:
    """Add an elliptical Gaussian in place, only over a cutout a few sigma wide around (x, y)."""
    radius = math.ceil(_CUTOUT_SIGMAS * max(sx, sy))
    ny, nx = image.shape
    x0, x1 = max(0, math.floor(x) - radius), min(nx, math.floor(x) + radius + 2)
    y0, y1 = max(0, math.floor(y) - radius), min(ny, math.floor(y) + radius + 2)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - x, yy - y
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    u = dx * cos_t + dy * sin_t
    v = -dx * sin_t + dy * cos_t
    image[y0:y1, x0:x1] += peak * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def _check_args(
    size: int,
    n_sources: int,
    noise_jy: float,
    beam_arcsec: float,
    pixel_arcsec: float,
    min_flux_jy: float,
    max_flux_jy: float,
    extended_fraction: float,
) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if n_sources < 0:
        raise ValueError(f"n_sources must be >= 0, got {n_sources}")
    if noise_jy < 0:
        raise ValueError(f"noise_jy must be >= 0, got {noise_jy}")
    if beam_arcsec <= 0 or pixel_arcsec <= 0:
        raise ValueError("beam_arcsec and pixel_arcsec must be > 0")
    if not 0 < min_flux_jy <= max_flux_jy:
        raise ValueError(f"need 0 < min_flux_jy <= max_flux_jy, got {min_flux_jy} and {max_flux_jy}")
    if not 0.0 <= extended_fraction <= 1.0:
        raise ValueError(f"extended_fraction must be in [0, 1], got {extended_fraction}")


def synthetic_image(
    path: Path,
    size: int = 512,
    n_sources: int = 50,
    seed: int = 0,
    noise_jy: float = 20e-6,
    beam_arcsec: float = 15.0,
    pixel_arcsec: float = 4.0,
    min_flux_jy: float = 2e-3,
    max_flux_jy: float = 0.2,
    extended_fraction: float = 0.0,
) -> list[TruthSource]:
    """Write a ``size`` x ``size`` float32 FITS image of beam-shaped sources on white noise; return the truth.

    A fraction ``extended_fraction`` of the sources is resolved: an elliptical Gaussian of intrinsic FWHM
    1-3 beams convolved with the beam, whose integrated flux therefore exceeds its peak.
    """
    _check_args(
        size, n_sources, noise_jy, beam_arcsec, pixel_arcsec, min_flux_jy, max_flux_jy, extended_fraction
    )
    rng = np.random.default_rng(seed)
    beam_px = beam_arcsec / pixel_arcsec
    beam_sigma_px = beam_px / FWHM_PER_SIGMA
    positions = place_sources(rng, n_sources, size, MIN_SEPARATION_BEAMS * beam_px)
    peaks = np.exp(rng.uniform(math.log(min_flux_jy), math.log(max_flux_jy), size=n_sources))
    extended = rng.uniform(size=n_sources) < extended_fraction

    image = rng.normal(0.0, noise_jy, size=(size, size)) if noise_jy > 0 else np.zeros((size, size))
    header = synthetic_header(size, beam_arcsec, pixel_arcsec)
    ra, dec = WCS(header).all_pix2world(positions[:, 0], positions[:, 1], 0)

    truth: list[TruthSource] = []
    for i in range(n_sources):
        x, y = float(positions[i, 0]), float(positions[i, 1])
        peak = float(peaks[i])
        flux = peak
        sx = sy = beam_sigma_px
        theta = 0.0
        if extended[i]:
            intrinsic = rng.uniform(1.0, 3.0, size=2) * beam_sigma_px
            sx = math.hypot(beam_sigma_px, float(intrinsic.max()))
            sy = math.hypot(beam_sigma_px, float(intrinsic.min()))
            theta = float(rng.uniform(0.0, math.pi))
            flux = peak * (sx * sy) / (beam_sigma_px * beam_sigma_px)
        _add_gaussian(image, x, y, peak, sx, sy, theta)
        truth.append(TruthSource(i + 1, x, y, float(ra[i]), float(dec[i]), peak, flux, noise_jy=noise_jy))

    fits.PrimaryHDU(data=image.astype(np.float32), header=header).writeto(path, overwrite=True)
    return truth


def write_truth_csv(path: Path, sources: list[TruthSource]) -> Path:
    """Write the truth list as CSV with one column per ``TruthSource`` field (``noise_jy`` when known:
    ``cirasa compare`` takes its signal-to-noise cut from it)."""
    names = [f.name for f in dataclasses.fields(TruthSource)]
    if all(source.noise_jy is None for source in sources):
        names.remove("noise_jy")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for source in sources:
            writer.writerow([getattr(source, name) for name in names])
    return path
