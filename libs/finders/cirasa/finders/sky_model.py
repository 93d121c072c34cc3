"""A realistic crowded sky: power-law source counts down to the noise, blending, diffuse emission.

The test-campaign sky (``cirasa.finders.simulation``) puts almost every source far above 5 sigma and
keeps sources two beams apart, so it measures speed and deblending of bright sources, not how close a
finder gets to the detection limit. This one (issue 15) draws:

* ``density_per_deg2`` sources placed uniformly (no minimum separation by default: sources blend),
  at least ``BORDER_PX`` pixels from the border (``cirasa.finders.imaging.place_sources``);
* integrated fluxes from the differential counts dN/dS ~ S^-counts_slope, truncated below so that the
  source's *peak* on the map is at least ``min_snr`` times the noise, and above at ``max_flux_jy``.
  Each source's lower bound is ``min_snr * noise`` times its area in beams, so peaks follow the same
  power law from ``min_snr * noise`` up (a power law is scale-free);
* ``extended_fraction`` of them elliptical Gaussians of intrinsic major FWHM uniform in
  ``extended_beams`` (2-4 beams), axis ratio and position angle as in the campaign sky, convolved with
  the beam analytically; the others are the beam;
* beam-correlated Gaussian noise (``correlated_noise=False``: white) of ``noise_jy`` rms, rendered with
  the campaign sky's helpers;
* optionally, diffuse emission: a zero-mean Gaussian random field smoothed to ``diffuse_scale_beams``
  beams FWHM, scaled to ``diffuse_jy`` rms (0 = none). It is drawn last, so two maps that differ only
  by ``diffuse_jy`` differ exactly by the diffuse field.

The truth CSV has the campaign columns (``simulation.TRUTH_COLUMNS``, read by ``cirasa compare``) and
two more: ``snr`` (true peak / noise) and ``extent_beams`` (intrinsic major FWHM in beams, 0 for a
point source).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from cirasa.finders.catalog import pa_to_pixel_angle
from cirasa.finders.imaging import FWHM_PER_SIGMA, place_sources, synthetic_header
from cirasa.finders.simulation import (
    EXTENDED_AXIS_RATIO,
    TRUTH_COLUMNS,
    SkySource,
    SourceType,
    _cutout_radii,
    _noise,
    _render,
    sky_truth_row,
)

REALISTIC_COLUMNS: tuple[str, ...] = (*TRUTH_COLUMNS, "snr", "extent_beams")


@dataclass(frozen=True)
class RealisticSource(SkySource):
    """A ``SkySource`` with its true peak signal-to-noise and intrinsic extent (0 for a point source)."""

    snr: float
    extent_beams: float


@dataclass(frozen=True)
class RealisticSky:
    """The parameters of the sky; the defaults are issue 15's map (800^2, 4", 15" beam, 20 uJy)."""

    size: int = 800
    density_per_deg2: float = 2500.0
    pixel_arcsec: float = 4.0
    beam_arcsec: float = 15.0
    noise_jy: float = 20e-6
    min_snr: float = 3.0
    counts_slope: float = 1.6
    max_flux_jy: float = 1.0
    extended_fraction: float = 0.1
    extended_beams: tuple[float, float] = (2.0, 4.0)
    diffuse_jy: float = 0.0
    diffuse_scale_beams: float = 20.0
    min_separation_beams: float = 0.0
    correlated_noise: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad parameter."""
        finite_positive = {
            "pixel_arcsec": self.pixel_arcsec,
            "beam_arcsec": self.beam_arcsec,
            "noise_jy": self.noise_jy,
            "min_snr": self.min_snr,
            "counts_slope": self.counts_slope,
            "diffuse_scale_beams": self.diffuse_scale_beams,
        }
        for name, value in finite_positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value:g}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        for name, value in (("density_per_deg2", self.density_per_deg2), ("diffuse_jy", self.diffuse_jy)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value:g}")
        if not 0.0 <= self.extended_fraction <= 1.0:
            raise ValueError(f"extended_fraction must be in [0, 1], got {self.extended_fraction:g}")
        lo, hi = self.extended_beams
        if not 0 < lo <= hi:
            raise ValueError(f"extended_beams must be 0 < lo <= hi, got {self.extended_beams}")
        if self.min_separation_beams < 0:
            raise ValueError(f"min_separation_beams must be >= 0, got {self.min_separation_beams:g}")
        floor = self.min_snr * self.noise_jy * (1.0 + hi * hi)  # largest extended source's lower bound
        if not self.max_flux_jy > floor:
            raise ValueError(
                f"max_flux_jy ({self.max_flux_jy:g} Jy) must exceed min_snr x noise x the largest source's "
                f"area in beams ({floor:g} Jy)"
            )

    @property
    def n_sources(self) -> int:
        return round(self.density_per_deg2 * (self.size * self.pixel_arcsec / 3600.0) ** 2)


def power_law(rng: np.random.Generator, lo: np.ndarray, hi: float, slope: float) -> np.ndarray:
    """One draw per element of ``lo`` from p(S) ~ S^-slope on [lo, hi], by inverting the CDF."""
    u = rng.uniform(size=len(lo))
    if math.isclose(slope, 1.0):
        values: np.ndarray = lo * (hi / lo) ** u
    else:
        e = 1.0 - slope
        values = (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)
    return np.clip(values, lo, hi)


@dataclass(frozen=True)
class _Shapes:
    extended: np.ndarray
    extent_beams: np.ndarray  # intrinsic major FWHM in beams, 0 for point sources
    maj: np.ndarray  # FWHM on the map, arcsec
    min: np.ndarray
    pa: np.ndarray  # degrees east of north


def _shapes(rng: np.random.Generator, n: int, sky: RealisticSky) -> _Shapes:
    extended = np.zeros(n, dtype=bool)
    extended[rng.choice(n, size=round(sky.extended_fraction * n), replace=False)] = True
    n_ext = int(extended.sum())
    beam = sky.beam_arcsec
    major_in = rng.uniform(*sky.extended_beams, size=n_ext)
    minor_in = major_in * rng.uniform(*EXTENDED_AXIS_RATIO, size=n_ext)
    extent, maj, mnr, pa = np.zeros(n), np.full(n, beam), np.full(n, beam), np.zeros(n)
    extent[extended] = major_in
    maj[extended] = beam * np.hypot(major_in, 1.0)
    mnr[extended] = beam * np.hypot(minor_in, 1.0)
    pa[extended] = rng.uniform(0.0, 180.0, size=n_ext)
    return _Shapes(extended, extent, maj, mnr, pa)


def diffuse_field(rng: np.random.Generator, size: int, rms: float, fwhm_px: float) -> np.ndarray:
    """A zero-mean Gaussian random field: white noise smoothed by a Gaussian of ``fwhm_px`` (in Fourier
    space, periodic), rescaled to exactly ``rms``."""
    white = rng.standard_normal((size, size))
    sigma = fwhm_px / FWHM_PER_SIGMA
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    transfer = np.exp(-2.0 * (math.pi * sigma) ** 2 * (kx * kx + ky * ky))
    field = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=(size, size))
    field -= field.mean()
    std = float(field.std())
    scaled: np.ndarray = field * (rms / std) if std > 0 else field
    return scaled.astype(np.float32)


def simulate_realistic_sky(
    path: Path, sky: RealisticSky | None = None, seed: int = 0, truth_path: Path | None = None
) -> list[RealisticSource]:
    """Write the map described by ``sky`` (see the module docstring) and return its truth; with
    ``truth_path`` also write it as CSV. The same ``sky`` and ``seed`` give the same map and truth."""
    sky = sky or RealisticSky()
    sky.check()
    rng = np.random.default_rng(seed)
    n = sky.n_sources
    beam_px = sky.beam_arcsec / sky.pixel_arcsec
    xy = place_sources(rng, n, sky.size, sky.min_separation_beams * beam_px)
    shapes = _shapes(rng, n, sky)
    area_beams = shapes.maj * shapes.min / sky.beam_arcsec**2
    flux = power_law(rng, sky.min_snr * sky.noise_jy * area_beams, sky.max_flux_jy, sky.counts_slope)
    peak = flux / area_beams

    header = synthetic_header(sky.size, sky.beam_arcsec, sky.pixel_arcsec)
    header["HISTORY"] = (
        f"cirasa realistic sky: {n} sources ({int(shapes.extended.sum())} extended), "
        f"{sky.density_per_deg2:g}/deg2, dN/dS ~ S^-{sky.counts_slope:g} from {sky.min_snr:g} sigma, "
        f"seed {seed}"
    )
    header["HISTORY"] = f"noise {sky.noise_jy:g} Jy/beam, diffuse {sky.diffuse_jy:g} Jy/beam rms"
    wcs = WCS(header)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    angle = np.radians(pa_to_pixel_angle(wcs, xy[:, 0], xy[:, 1], shapes.pa)) if n else np.empty(0)

    image = _noise(rng, sky.size, sky.noise_jy, beam_px / FWHM_PER_SIGMA, sky.correlated_noise)
    to_sigma_px = 1.0 / (sky.pixel_arcsec * FWHM_PER_SIGMA)
    sigma_major, sigma_minor = shapes.maj * to_sigma_px, shapes.min * to_sigma_px
    radius = _cutout_radii(peak, sigma_major, sky.noise_jy)
    _render(image, xy[:, 0], xy[:, 1], peak, sigma_major, sigma_minor, angle, radius)
    if sky.diffuse_jy > 0:
        image += diffuse_field(rng, sky.size, sky.diffuse_jy, sky.diffuse_scale_beams * beam_px)
    fits.PrimaryHDU(data=image, header=header).writeto(path, overwrite=True)

    kinds: list[SourceType] = ["extended" if e else "point" for e in shapes.extended.tolist()]
    truth = [
        RealisticSource(
            i + 1,
            float(xy[i, 0]),
            float(xy[i, 1]),
            float(ra[i]),
            float(dec[i]),
            float(peak[i]),
            float(flux[i]),
            kinds[i],
            float(shapes.maj[i]),
            float(shapes.min[i]),
            float(shapes.pa[i]),
            float(peak[i] / sky.noise_jy),
            float(shapes.extent_beams[i]),
            noise_jy=sky.noise_jy,
        )
        for i in range(n)
    ]
    if truth_path is not None:
        write_realistic_truth_csv(truth_path, truth, sky.noise_jy)
    return truth


def write_realistic_truth_csv(path: Path, sources: list[RealisticSource], noise_jy: float) -> Path:
    """The campaign truth CSV (``simulation.write_sky_truth_csv``) plus ``snr`` and ``extent_beams``."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REALISTIC_COLUMNS)
        for s in sources:
            writer.writerow([*sky_truth_row(s, noise_jy), repr(s.snr), repr(s.extent_beams)])
    return path
