"""The sky of the CIRASA paper's test campaign: a radio map with a known truth catalogue.

The recipe (research/finder-anchors.md §1):

* ``RA---SIN``/``DEC--SIN`` centred on (150, -30) deg, square pixels, a circular Gaussian beam
  (``BMAJ``/``BMIN``/``BPA``), ``FREQ = RESTFRQ = 1.4 GHz``, ``BUNIT = JY/BEAM``, float32 data;
* sources at ``density_per_deg2``, placed uniformly by random sequential addition at least
  ``min_separation_beams`` beam FWHM apart and at least ``BORDER_PX`` pixels from the border
  (``cirasa.finders.imaging.place_sources``);
* point sources (``1 - extended_fraction`` of them) are the beam, with an integrated flux S drawn from
  p(S) ~ exp(-S / 0.625 Jy) truncated to [50 µJy, 1 Jy];
* extended sources are elliptical Gaussians: intrinsic major FWHM uniform in [1, 3] beams, axis ratio
  uniform in [0.4, 1], position angle uniform, convolved with the beam analytically (for a circular
  beam the convolved axes are the quadrature sums of the intrinsic ones and the beam, the angle is
  unchanged); their integrated flux follows the same law truncated to [5 µJy, 1 mJy];
* Gaussian noise of ``noise_jy`` rms per pixel, beam-correlated (white noise smoothed by the beam and
  rescaled to the rms) unless ``correlated_noise=False``.

The truth catalogue (``write_sky_truth_csv``) has one row per source: ``id, type, ra, dec, x, y,
flux_jy, peak_jy, maj, min, pa, noise_jy``. ``x``/``y`` are 0-based pixels (numpy / astropy
``origin=0``), ``flux_jy`` is the integrated flux, ``peak_jy`` the peak of the source as it appears on
the map (Jy/beam), ``maj``/``min`` its FWHM on the map in arcsec (the beam for a point source), ``pa`` the
position angle of its major axis in degrees east of north, and ``noise_jy`` the map's noise rms, repeated
on every row so that a comparison can set its signal-to-noise cut from the truth file alone.

Sizes up to 7200 x 7200 take seconds: placement is vectorised on a grid, the noise is generated and
smoothed in strips of rows, and each source is rendered in a cutout a few sigma wide.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from cirasa.finders.catalog import pa_to_pixel_angle
from cirasa.finders.imaging import FWHM_PER_SIGMA, TruthSource, place_sources, synthetic_header

SourceType = Literal["point", "extended"]

#: p(S) ~ exp(-S / FLUX_SCALE_JY), i.e. exp(-1.6 S/Jy)
FLUX_SCALE_JY = 1.0 / 1.6
POINT_FLUX_RANGE_JY = (50e-6, 1.0)
EXTENDED_FLUX_RANGE_JY = (5e-6, 1e-3)
EXTENDED_MAJOR_BEAMS = (1.0, 3.0)
EXTENDED_AXIS_RATIO = (0.4, 1.0)
MIN_SEPARATION_BEAMS = 2.0
TRUTH_COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "ra",
    "dec",
    "x",
    "y",
    "flux_jy",
    "peak_jy",
    "maj",
    "min",
    "pa",
    "noise_jy",
)

_KERNEL_SIGMAS = 4.0  # half-width of the noise smoothing kernel
_NOISE_STRIP_ROWS = 32  # rows of noise generated and smoothed at a time (cache-sized strips)
_CUTOUT_FLOOR = 0.01  # render each source out to where it falls below this fraction of the noise rms
_MIN_CUTOUT_SIGMAS = 3.0
_RENDER_CHUNK_PIXELS = 2_000_000  # cutout pixels rendered per vectorised step


@dataclass(frozen=True)
class SkySource(TruthSource):
    """A ``TruthSource`` with its kind and its shape on the map (FWHM in arcsec, PA east of north)."""

    type: SourceType
    maj_arcsec: float
    min_arcsec: float
    pa_deg: float


def truncated_exponential(rng: np.random.Generator, n: int, scale: float, lo: float, hi: float) -> np.ndarray:
    """``n`` draws from p(S) ~ exp(-S / scale) restricted to [lo, hi], by inverting the CDF."""
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi, got [{lo}, {hi}]")
    u = rng.uniform(size=n)
    # S = lo - scale * ln(1 - u * (1 - exp(-(hi - lo) / scale))), written to stay exact for tiny ranges
    span = -math.expm1(-(hi - lo) / scale)
    values: np.ndarray = lo - scale * np.log1p(-u * span)
    return np.clip(values, lo, hi)


def _gaussian_kernel(sigma_px: float) -> np.ndarray:
    radius = max(1, math.ceil(_KERNEL_SIGMAS * sigma_px))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma_px) ** 2)
    normalised: np.ndarray = kernel / kernel.sum()
    return normalised


def _smooth_valid(data: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``data`` with a symmetric odd-length ``kernel`` along ``axis``, keeping only the
    outputs whose window lies inside ``data`` (the axis shrinks by ``len(kernel) - 1``)."""
    radius = len(kernel) // 2
    n = data.shape[axis] - 2 * radius

    def window(start: int) -> np.ndarray:
        return data[:, start : start + n] if axis == 1 else data[start : start + n, :]

    out = window(radius) * np.float32(kernel[radius])
    tmp = np.empty_like(out)
    for i in range(radius):
        np.add(window(i), window(2 * radius - i), out=tmp)
        tmp *= np.float32(kernel[i])
        out += tmp
    return out


def _noise(
    rng: np.random.Generator, size: int, rms: float, beam_sigma_px: float, correlated: bool
) -> np.ndarray:
    """A float32 ``size`` x ``size`` noise map of the given rms.

    Correlated noise is unit white noise on a grid padded by the kernel radius, smoothed by the beam
    (separable, so two 1-D passes) with only fully-covered outputs kept, so that every pixel has the
    same statistics; its standard deviation is then exactly ``sum(k**2)`` for the 1-D kernel ``k``, which
    sets the rescaling. It is made in strips of rows to bound the memory to the map itself.
    """
    image = np.empty((size, size), dtype=np.float32)
    if rms == 0:
        image.fill(0.0)
        return image
    if not correlated:
        for r0 in range(0, size, _NOISE_STRIP_ROWS * 8):
            band = image[r0 : r0 + _NOISE_STRIP_ROWS * 8]
            rng.standard_normal(band.shape, dtype=np.float32, out=band)
            band *= np.float32(rms)
        return image
    kernel = _gaussian_kernel(beam_sigma_px)
    radius = len(kernel) // 2
    width = size + 2 * radius
    scale = np.float32(rms / float(np.sum(kernel**2)))
    carry = rng.standard_normal((2 * radius, width), dtype=np.float32)
    for r0 in range(0, size, _NOISE_STRIP_ROWS):
        n_rows = min(_NOISE_STRIP_ROWS, size - r0)
        white = np.concatenate([carry, rng.standard_normal((n_rows, width), dtype=np.float32)])
        strip = _smooth_valid(_smooth_valid(white, kernel, axis=1), kernel, axis=0)
        strip *= scale
        image[r0 : r0 + n_rows] = strip
        carry = white[-2 * radius :]
    return image


def _cutout_radii(peak: np.ndarray, sigma_px: np.ndarray, noise_jy: float) -> np.ndarray:
    """Half-widths in pixels out to which each Gaussian stays above ``_CUTOUT_FLOOR`` of the noise rms
    (above a millionth of its peak on a noiseless map), and at least ``_MIN_CUTOUT_SIGMAS`` sigma."""
    amplitude = np.abs(peak)
    floor = np.full(len(peak), _CUTOUT_FLOOR * noise_jy) if noise_jy > 0 else 1e-6 * amplitude
    ratio = np.where(floor > 0, amplitude / np.where(floor > 0, floor, 1.0), 1.0)
    sigmas = np.sqrt(2.0 * np.log(np.maximum(ratio, 1.0)))
    radii: np.ndarray = np.ceil(np.maximum(sigmas, _MIN_CUTOUT_SIGMAS) * sigma_px).astype(np.int64)
    return radii


def _render(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    peak: np.ndarray,
    sigma_major: np.ndarray,
    sigma_minor: np.ndarray,
    angle_rad: np.ndarray,
    radius: np.ndarray,
) -> None:
    """Add elliptical Gaussians to ``image`` in place, each over a (2r+1)^2 cutout around its centre.

    Sources with the same cutout size are rendered together as a stack of cutouts, in chunks of a few
    million pixels, and accumulated with ``np.add.at`` (cutouts may overlap). The major axis makes
    ``angle_rad`` with +x, counter-clockwise.
    """
    ny, nx = image.shape
    flat_image = image.reshape(-1)
    circular = sigma_major == sigma_minor
    for r, is_circular in sorted(set(zip(radius.tolist(), circular.tolist(), strict=True))):
        members = np.flatnonzero((radius == r) & (circular == is_circular))
        offsets = np.arange(-r, r + 1)
        chunk = max(1, _RENDER_CHUNK_PIXELS // len(offsets) ** 2)
        for start in range(0, len(members), chunk):
            idx = members[start : start + chunk]
            cols = np.rint(x[idx]).astype(np.int64)[:, None] + offsets[None, :]  # (N, w)
            rows = np.rint(y[idx]).astype(np.int64)[:, None] + offsets[None, :]
            dx = (cols - x[idx, None]).astype(np.float32)  # (N, w)
            dy = (rows - y[idx, None]).astype(np.float32)
            s_maj = sigma_major[idx, None].astype(np.float32)
            s_min = sigma_minor[idx, None].astype(np.float32)
            amplitude = peak[idx, None, None].astype(np.float32)
            if np.array_equal(s_maj, s_min):  # circular: the product of two 1-D profiles
                gx = np.exp(np.float32(-0.5) * (dx / s_maj) ** 2)
                gy = np.exp(np.float32(-0.5) * (dy / s_maj) ** 2)
                values = amplitude * gy[:, :, None] * gx[:, None, :]
            else:
                cos_t = np.cos(angle_rad[idx]).astype(np.float32)[:, None, None]
                sin_t = np.sin(angle_rad[idx]).astype(np.float32)[:, None, None]
                dx3, dy3 = dx[:, None, :], dy[:, :, None]
                u = (dx3 * cos_t + dy3 * sin_t) / s_maj[:, :, None]
                v = (dy3 * cos_t - dx3 * sin_t) / s_min[:, :, None]
                values = amplitude * np.exp(np.float32(-0.5) * (u * u + v * v))
            inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
            where = rows[:, :, None] * nx + cols[:, None, :]
            np.add.at(flat_image, where[inside], values[inside])


def _check(
    size: int,
    density_per_deg2: float,
    pixel_arcsec: float,
    beam_arcsec: float,
    noise_jy: float,
    extended_fraction: float,
    min_separation_beams: float,
) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not (math.isfinite(density_per_deg2) and density_per_deg2 >= 0):
        raise ValueError(f"density_per_deg2 must be >= 0, got {density_per_deg2}")
    if not (pixel_arcsec > 0 and beam_arcsec > 0):
        raise ValueError("pixel_arcsec and beam_arcsec must be > 0")
    if not (math.isfinite(noise_jy) and noise_jy >= 0):
        raise ValueError(f"noise_jy must be >= 0, got {noise_jy}")
    if not 0.0 <= extended_fraction <= 1.0:
        raise ValueError(f"extended_fraction must be in [0, 1], got {extended_fraction}")
    if min_separation_beams < 0:
        raise ValueError(f"min_separation_beams must be >= 0, got {min_separation_beams}")


class _Drawn(NamedTuple):
    """The random properties of ``n`` sources, one array element per source."""

    extended: np.ndarray
    flux: np.ndarray  # integrated, Jy
    peak: np.ndarray  # on the map, Jy/beam
    maj: np.ndarray  # FWHM on the map, arcsec
    min: np.ndarray
    pa: np.ndarray  # degrees east of north


def _draw(rng: np.random.Generator, n: int, extended_fraction: float, beam_arcsec: float) -> _Drawn:
    """Kinds, fluxes and shapes following the recipe (see the module docstring)."""
    extended = np.zeros(n, dtype=bool)
    extended[rng.choice(n, size=round(extended_fraction * n), replace=False)] = True
    n_ext = int(extended.sum())
    flux = np.empty(n)
    flux[~extended] = truncated_exponential(rng, n - n_ext, FLUX_SCALE_JY, *POINT_FLUX_RANGE_JY)
    flux[extended] = truncated_exponential(rng, n_ext, FLUX_SCALE_JY, *EXTENDED_FLUX_RANGE_JY)
    major_in = rng.uniform(*EXTENDED_MAJOR_BEAMS, size=n_ext) * beam_arcsec
    minor_in = major_in * rng.uniform(*EXTENDED_AXIS_RATIO, size=n_ext)
    pa_in = rng.uniform(0.0, 180.0, size=n_ext)

    maj = np.full(n, beam_arcsec)
    mnr = np.full(n, beam_arcsec)
    pa = np.zeros(n)
    maj[extended] = np.hypot(major_in, beam_arcsec)
    mnr[extended] = np.hypot(minor_in, beam_arcsec)
    pa[extended] = pa_in
    # Jy/beam: the flux over the source's area in beams (exactly the flux for a point source)
    peak = np.where(extended, flux * beam_arcsec * beam_arcsec / (maj * mnr), flux)
    return _Drawn(extended, flux, peak, maj, mnr, pa)


def simulate_sky(
    path: Path,
    size: int = 900,
    density_per_deg2: float = 2500.0,
    pixel_arcsec: float = 4.0,
    beam_arcsec: float = 15.0,
    noise_jy: float = 20e-6,
    extended_fraction: float = 0.1,
    seed: int = 0,
    correlated_noise: bool = True,
    *,
    truth_path: Path | None = None,
    min_separation_beams: float = MIN_SEPARATION_BEAMS,
) -> list[SkySource]:
    """Write a ``size`` x ``size`` map following the CIRASA test-campaign recipe; return its truth.

    The number of sources is ``density_per_deg2`` times the map's area (rounded), and exactly
    ``round(extended_fraction * n)`` of them, chosen at random, are extended. The same arguments and
    ``seed`` give the same map and truth. With ``truth_path`` the truth is also written as CSV.
    """
    _check(
        size,
        density_per_deg2,
        pixel_arcsec,
        beam_arcsec,
        noise_jy,
        extended_fraction,
        min_separation_beams,
    )
    rng = np.random.default_rng(seed)
    n = round(density_per_deg2 * (size * pixel_arcsec / 3600.0) ** 2)
    beam_px = beam_arcsec / pixel_arcsec
    xy = place_sources(rng, n, size, min_separation_beams * beam_px)
    drawn = _draw(rng, n, extended_fraction, beam_arcsec)

    header = synthetic_header(size, beam_arcsec, pixel_arcsec)
    header["HISTORY"] = (
        f"cirasa simulate_sky: {n} sources ({int(drawn.extended.sum())} extended), "
        f"{density_per_deg2:g}/deg2, seed {seed}"
    )
    kind = "beam-correlated" if correlated_noise else "white"
    header["HISTORY"] = f"cirasa simulate_sky: noise {noise_jy:g} Jy/beam rms, {kind}"
    wcs = WCS(header)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    angle = np.radians(pa_to_pixel_angle(wcs, xy[:, 0], xy[:, 1], drawn.pa)) if n else np.empty(0)

    image = _noise(rng, size, noise_jy, beam_px / FWHM_PER_SIGMA, correlated_noise)
    to_sigma_px = 1.0 / (pixel_arcsec * FWHM_PER_SIGMA)  # FWHM in arcsec -> sigma in pixels
    sigma_major, sigma_minor = drawn.maj * to_sigma_px, drawn.min * to_sigma_px
    radius = _cutout_radii(drawn.peak, sigma_major, noise_jy)
    _render(image, xy[:, 0], xy[:, 1], drawn.peak, sigma_major, sigma_minor, angle, radius)
    fits.PrimaryHDU(data=image, header=header).writeto(path, overwrite=True)

    truth = _truth(xy, np.asarray(ra), np.asarray(dec), drawn)
    if truth_path is not None:
        write_sky_truth_csv(truth_path, truth, noise_jy)
    return truth


def _truth(xy: np.ndarray, ra: np.ndarray, dec: np.ndarray, drawn: _Drawn) -> list[SkySource]:
    kinds: list[SourceType] = ["extended" if e else "point" for e in drawn.extended.tolist()]
    columns = zip(
        xy[:, 0].tolist(),
        xy[:, 1].tolist(),
        ra.tolist(),
        dec.tolist(),
        drawn.peak.tolist(),
        drawn.flux.tolist(),
        kinds,
        drawn.maj.tolist(),
        drawn.min.tolist(),
        drawn.pa.tolist(),
        strict=True,
    )
    return [SkySource(i, *row) for i, row in enumerate(columns, start=1)]


def write_sky_truth_csv(path: Path, sources: list[SkySource], noise_jy: float) -> Path:
    """Write the truth with the columns of ``TRUTH_COLUMNS`` (see the module docstring)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRUTH_COLUMNS)
        for s in sources:
            writer.writerow(sky_truth_row(s, noise_jy))
    return path


def sky_truth_row(s: SkySource, noise_jy: float) -> list[int | str]:
    """One truth CSV row, in the order of ``TRUTH_COLUMNS``."""
    return [
        s.id,
        s.type,
        repr(s.ra),
        repr(s.dec),
        repr(s.x),
        repr(s.y),
        repr(s.flux_jy),
        repr(s.peak_jy),
        repr(s.maj_arcsec),
        repr(s.min_arcsec),
        repr(s.pa_deg),
        repr(noise_jy),
    ]
