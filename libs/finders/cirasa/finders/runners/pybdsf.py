"""Source finding with PyBDSF (bdsf): islands above a threshold, decomposed into Gaussians, grouped into
sources.

``python -m cirasa.finders.runners.pybdsf [options] --image PATH --out-dir DIR`` writes the standard
catalogue products (one row per Gaussian), keeps PyBDSF's own source and Gaussian lists
(``<base>.pybdsf.{srl,gaul}.fits``), the noise maps it was given (``<base>.pybdsf.{mean,rms}.fits``) and
its log, and prints a one-line JSON summary. Bad input exits with
code 2 and one line on stderr.

PyBDSF writes ``<image>.pybdsf.log`` beside its input, and the uploaded image lives in a directory the
job may not write to: the input is therefore linked into the output directory and PyBDSF reads the link.

The background and noise are measured here, not by PyBDSF: its clipped rms counts the faint crowd of a
confused map as noise (``lower_tail_noise``; the reasoning and figures are in ``specs/pybdsf.py``).
"""

import cirasa.finders.runners.single_threaded  # noqa: F401 (first: one BLAS thread, before numpy)

# isort: split

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bdsf
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

from cirasa.finders.catalog import Catalog, CatalogSource
from cirasa.finders.runners.support import (
    Beam,
    Image,
    InputError,
    add_common_arguments,
    beam_from,
    header_float,
    job_cores,
    load_image,
    lower_tail_noise,
    named_image,
    non_negative_float,
    non_negative_int,
    pixel_scale_arcsec,
    positive_float,
    product_base,
    require_primary_hdu,
    run_cli,
    write_standard_products,
)

FINDER = "pybdsf"
PROG = "pybdsf_finder"
#: the noise box without rms-box, in beam FWHM: ~800 independent beams, so each box measures the noise
#: to ~5%, and the largest sources (4 beams) are small beside it
BOX_BEAMS = 32
#: a fitted Gaussian fainter than this fraction of thresh-pix (in local sigmas) is flagged and dropped
COMPONENT_MIN_FRACTION = 0.9


@dataclass(frozen=True)
class Options:
    thresh_isl: float = 3.0
    thresh_pix: float = 5.0
    rms_box: int = 0  # 0: BOX_BEAMS beams
    rms_step: int = 0  # 0: a third of rms_box
    group_by_isl: bool = False
    frequency: float | None = None
    beam_maj: float | None = None
    beam_min: float | None = None
    beam_pa: float | None = None


def frequency_from(header: fits.Header, option: float | None) -> tuple[float | None, str]:
    """The frequency (Hz) to give PyBDSF and where it came from; None lets PyBDSF read a spectral axis."""
    if option:
        return option, "options"
    for key in ("FREQ", "RESTFRQ", "RESTFREQ"):
        value = header_float(header, key)
        if value is not None and value > 0:
            return value, key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spectral = WCS(header).wcs.spec >= 0
        except Exception:  # a broken spectral axis is no frequency
            spectral = False
    if spectral:
        return None, "spectral axis"
    raise InputError(
        "no frequency in the image header (FREQ, RESTFRQ or a spectral axis): "
        "give it with the frequency option (Hz)"
    )


def rms_box(options: Options, shape: tuple[int, ...], beam_px: float) -> tuple[int, int]:
    """(box, step) in pixels for the noise maps: rms-box and rms-step, else ``BOX_BEAMS`` beams and a third
    of that."""
    if not options.rms_box:
        if options.rms_step:
            raise InputError("rms-step was given without rms-box: give both (pixels)")
        box = max(24, round(BOX_BEAMS * beam_px))
        return box, box // 3
    step = options.rms_step or max(1, options.rms_box // 3)
    if step >= options.rms_box:
        raise InputError(f"rms-step ({step}) must be smaller than rms-box ({options.rms_box})")
    if options.rms_box > min(shape):
        raise InputError(f"rms-box ({options.rms_box}) is larger than the image ({shape[1]}x{shape[0]})")
    return (options.rms_box, step)


def noise_kwargs(image: Image, box: tuple[int, int], out_dir: Path, base: str) -> dict[str, Any]:
    """PyBDSF's background options for our lower-tail noise: maps in ``<base>.pybdsf.{mean,rms}.fits``
    when the box fits PyBDSF's limit (a quarter of the image), else one level for the whole map."""
    data = np.asarray(image.data, dtype=np.float64)
    if box[0] > min(data.shape) / 4.0:
        return {"rms_map": False, "rms_value": lower_tail_noise(data)[1], "mean_map": "const"}
    paths = [out_dir / f"{base}.pybdsf.{kind}.fits" for kind in ("mean", "rms")]
    header = image.wcs.to_header()
    for path, plane in zip(paths, noise_maps(data, *box), strict=True):
        fits.PrimaryHDU(plane.astype(np.float32), header=header).writeto(path, overwrite=True)
    return {
        "rms_box": box,
        "rms_map": True,
        # PyBDSF then keeps the mean map only if it varies significantly, else a constant (0 if confused)
        "mean_map": "default",
        # PyBDSF opens them relative to the image's directory, out_dir (``link_input``)
        "rmsmean_map_filename": [p.name for p in paths],
    }


def _centres(n: int, box: int, step: int) -> np.ndarray:
    last = max(n - box, 0)
    starts = np.unique(np.append(np.arange(0, last + 1, step), last))
    return starts + min(box, n) / 2.0


def noise_maps(data: np.ndarray, box: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Background and rms maps: ``lower_tail_noise`` in boxes of ``box`` pixels every ``step``, linearly
    interpolated between box centres (held constant beyond the outer ones)."""
    ny, nx = data.shape
    yc, xc = _centres(ny, box, step), _centres(nx, box, step)
    grids = np.full((2, yc.size, xc.size), np.nan)
    for i, cy in enumerate(yc):
        y0 = int(cy - min(box, ny) / 2.0)
        for j, cx in enumerate(xc):
            x0 = int(cx - min(box, nx) / 2.0)
            grids[:, i, j] = lower_tail_noise(data[y0 : y0 + box, x0 : x0 + box])
    whole = lower_tail_noise(data)
    for k in range(2):
        grids[k][~np.isfinite(grids[k]) | ~(grids[1] > 0)] = whole[k]
    iy = np.interp(np.arange(ny), yc, np.arange(yc.size))
    ix = np.interp(np.arange(nx), xc, np.arange(xc.size))
    coords = np.meshgrid(iy, ix, indexing="ij")
    mean, rms = (map_coordinates(g, coords, order=1, mode="nearest") for g in grids)
    return mean, rms


def link_input(image_path: Path, out_dir: Path) -> Path:
    """A symbolic link to the image inside ``out_dir`` (where PyBDSF may write its log), or the image
    itself when it is already there."""
    target = image_path.resolve()
    if target.parent == out_dir.resolve():
        return image_path
    link = out_dir / image_path.name
    if link.is_symlink() or link.exists():
        if link.resolve() == target:
            return link
        link = out_dir / f"input-{image_path.name}"
        link.unlink(missing_ok=True)
    link.symlink_to(target)
    return link


def _pair(value: Any) -> tuple[float, float]:
    return float(value[0]), float(value[1])


def _error(value: float, scale: float = 1.0) -> float | None:
    return value * scale if math.isfinite(value) and value > 0 else None


def to_catalog_sources(gaussians: Sequence[Any], image: Image) -> list[CatalogSource]:
    """PyBDSF Gaussians to catalogue rows: a PyBDSF source is a source, its Gaussians its components."""
    ordered = sorted(gaussians, key=lambda g: (int(g.source_id), int(g.gaus_num)))
    if not ordered:
        return []
    sky = np.array([_pair(g.centre_sky) for g in ordered], dtype=float)
    x, y = image.wcs.all_world2pix(sky[:, 0], sky[:, 1], 0)
    rows: list[CatalogSource] = []
    count: dict[int, int] = {}
    for i, g in enumerate(ordered):
        source = int(g.source_id) + 1
        k = count[source] = count.get(source, 0) + 1
        ra_err, dec_err = _pair(g.centre_skyE)
        maj, mnr, pa = (float(v) for v in g.size_sky)
        maj_err, min_err, pa_err = (float(v) for v in g.size_skyE)
        peak, rms = float(g.peak_flux), float(g.rms)
        rows.append(
            CatalogSource(
                source_id=f"S{source}",
                component_id=f"S{source}c{k}",
                island_id=int(g.island_id) + 1,
                ra_deg=float(sky[i, 0]),
                dec_deg=float(sky[i, 1]),
                ra_err_arcsec=_error(ra_err, 3600.0),
                dec_err_arcsec=_error(dec_err, 3600.0),
                x_pix=float(x[i]),
                y_pix=float(y[i]),
                peak_flux_jy=peak,
                peak_flux_err_jy=_error(float(g.peak_fluxE)),
                int_flux_jy=float(g.total_flux),
                int_flux_err_jy=_error(float(g.total_fluxE)),
                maj_arcsec=maj * 3600.0,
                maj_err_arcsec=_error(maj_err, 3600.0),
                min_arcsec=mnr * 3600.0,
                min_err_arcsec=_error(min_err, 3600.0),
                pa_deg=pa % 180.0,
                pa_err_deg=_error(pa_err),
                snr=peak / rms if rms > 0 else None,
                finder=FINDER,
            )
        )
    return rows


def run(image_path: Path, out_dir: Path, options: Options, preview: bool) -> dict[str, object]:
    image = load_image(image_path)
    require_primary_hdu(image_path, image, FINDER)
    beam: Beam = beam_from(image.header, options.beam_maj, options.beam_min, options.beam_pa)
    frequency, frequency_source = frequency_from(image.header, options.frequency)
    pixel_arcsec = pixel_scale_arcsec(image.wcs)
    box = rms_box(options, image.data.shape, beam.maj_deg * 3600.0 / pixel_arcsec)
    finite = image.data[np.isfinite(image.data)]
    if finite.size == 0 or finite.min() == finite.max():
        raise InputError("the image has no noise to set a threshold against (constant or blank)")
    cores = job_cores() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    base = product_base(image_path)
    source_image = link_input(image_path, out_dir)

    kwargs: dict[str, Any] = {
        "thresh_isl": options.thresh_isl,
        "thresh_pix": options.thresh_pix,
        "beam": beam.as_tuple,
        "group_by_isl": options.group_by_isl,
        # a Gaussian is kept only if its peak reaches COMPONENT_MIN_FRACTION of the detection threshold
        # (PyBDSF's own flag is relative to the island threshold)
        "flag_minsnr": COMPONENT_MIN_FRACTION * options.thresh_pix / options.thresh_isl,
        "ncores": cores,
        "quiet": True,
        **noise_kwargs(image, box, out_dir, base),
    }
    if frequency is not None:
        kwargs["frequency"] = frequency
    native: list[Path] = []
    with redirect_stdout(sys.stderr):  # PyBDSF prints progress: keep stdout for the summary line
        img = bdsf.process_image(str(source_image), **kwargs)
        gaussians = list(img.gaussians)
        if gaussians:
            for kind in ("srl", "gaul"):
                path = out_dir / f"{base}.pybdsf.{kind}.fits"
                img.write_catalog(outfile=str(path), format="fits", catalog_type=kind, clobber=True)
                native.append(path)
    log = source_image.parent / f"{source_image.name}.pybdsf.log"
    native += [out_dir / f"{base}.pybdsf.{kind}.fits" for kind in ("mean", "rms")]
    if log.is_file():
        native.append(log)

    provenance: dict[str, Any] = {k: v for k, v in asdict(options).items() if not k.startswith("beam_")}
    provenance.update(
        rms_box=list(box),
        noise=kwargs.get("rms_value", "map"),
        frequency=frequency,
        frequency_from=frequency_source,
        ncores=cores,
        beam_maj_arcsec=beam.maj_deg * 3600.0,
        beam_min_arcsec=beam.min_deg * 3600.0,
        beam_pa_deg=beam.pa_deg,
        beam_from=beam.source,
        pixel_arcsec=pixel_arcsec,
    )
    provenance.pop("rms_step")
    catalog = Catalog(
        finder=FINDER,
        finder_version=str(bdsf.__version__),
        options=provenance,
        image=image_path.name,
        sources=to_catalog_sources(gaussians, image),
    )
    products = write_standard_products(catalog, image, image_path, out_dir, preview)
    return {
        "n_sources": len(catalog.sources),
        "products": [p.name for p in products],
        "native": [p.name for p in native if p.is_file()],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Find sources in a FITS image with PyBDSF.")
    parser.add_argument("--thresh-isl", type=positive_float, default=3.0, help="island threshold, sigmas")
    parser.add_argument("--thresh-pix", type=positive_float, default=5.0, help="detection threshold, sigmas")
    parser.add_argument("--rms-box", type=non_negative_int, default=0, help="rms box in pixels (0: 32 beams)")
    parser.add_argument("--rms-step", type=non_negative_int, default=0, help="rms box step in pixels")
    parser.add_argument("--group-by-isl", action="store_true", help="one source per island")
    parser.add_argument("--frequency", type=non_negative_float, default=None, help="frequency in Hz")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        thresh_isl=args.thresh_isl,
        thresh_pix=args.thresh_pix,
        rms_box=args.rms_box,
        rms_step=args.rms_step,
        group_by_isl=args.group_by_isl,
        frequency=args.frequency,
        beam_maj=args.beam_maj,
        beam_min=args.beam_min,
        beam_pa=args.beam_pa,
    )
    image = named_image(args.image, args.image_name, args.out_dir)
    return run_cli(PROG, lambda: run(image, args.out_dir, options, preview=not args.no_preview))


if __name__ == "__main__":
    sys.exit(main())
