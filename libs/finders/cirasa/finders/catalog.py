"""The one catalogue schema every finder writes, and its products (JSON, CSV, VOTable, DS9 regions, PNG).

Conventions: pixel positions are 0-based (numpy / astropy ``origin=0``); ``maj_arcsec`` and ``min_arcsec``
are FWHM; ``pa_deg`` is the position angle of the major axis east of north, in [0, 180).
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from pydantic import BaseModel, ConfigDict, Field, field_validator

_OPTIONAL_FLOATS = (
    "ra_deg",
    "dec_deg",
    "ra_err_arcsec",
    "dec_err_arcsec",
    "peak_flux_jy",
    "peak_flux_err_jy",
    "int_flux_jy",
    "int_flux_err_jy",
    "maj_arcsec",
    "maj_err_arcsec",
    "min_arcsec",
    "min_err_arcsec",
    "pa_deg",
    "pa_err_deg",
    "snr",
)
_UNITS = {"deg": "deg", "arcsec": "arcsec", "jy": "Jy", "pix": "pix"}
_BASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DEFAULT_REGION_RADIUS_ARCSEC = 10.0
_DEFAULT_MARKER_PX = 5.0


class CatalogSource(BaseModel):
    """One component. Missing or non-finite optional values are stored as None."""

    model_config = ConfigDict(extra="forbid")

    source_id: str
    component_id: str
    island_id: int
    ra_deg: float | None = None
    dec_deg: float | None = None
    ra_err_arcsec: float | None = None
    dec_err_arcsec: float | None = None
    x_pix: float = Field(allow_inf_nan=False, description="0-based pixel column")
    y_pix: float = Field(allow_inf_nan=False, description="0-based pixel row")
    peak_flux_jy: float | None = Field(None, description="Jy/beam")
    peak_flux_err_jy: float | None = None
    int_flux_jy: float | None = None
    int_flux_err_jy: float | None = None
    maj_arcsec: float | None = Field(None, description="major axis FWHM")
    maj_err_arcsec: float | None = None
    min_arcsec: float | None = Field(None, description="minor axis FWHM")
    min_err_arcsec: float | None = None
    pa_deg: float | None = Field(None, description="major axis position angle, east of north")
    pa_err_deg: float | None = None
    snr: float | None = None
    finder: str

    @field_validator(*_OPTIONAL_FLOATS, mode="before")
    @classmethod
    def _finite_or_none(cls, value: Any) -> Any:
        if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
            return None
        return value


CATALOG_COLUMNS: tuple[str, ...] = tuple(CatalogSource.model_fields)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Catalog(BaseModel):
    """A finder's output for one image; ``image`` is the input's file name only, never a path."""

    model_config = ConfigDict(extra="forbid")

    finder: str
    finder_version: str
    options: dict[str, Any] = Field(default_factory=dict)
    image: str
    created_at: datetime = Field(default_factory=_utc_now)
    sources: list[CatalogSource] = Field(default_factory=list)

    @field_validator("image")
    @classmethod
    def _file_name_only(cls, value: str) -> str:
        return re.split(r"[\\/]", value)[-1]


def read_catalog_json(path: Path) -> Catalog:
    return Catalog.model_validate_json(path.read_text())


def _unit(column: str) -> str | None:
    suffix = column.rsplit("_", 1)[-1]
    return _UNITS.get(suffix)


def _table(catalog: Catalog) -> Table:
    """An astropy Table with one column per schema field; None becomes NaN in float columns."""
    rows = [source.model_dump() for source in catalog.sources]
    table = Table()
    for name, field in CatalogSource.model_fields.items():
        values = [row[name] for row in rows]
        column: np.ndarray
        if field.annotation is str:
            column = np.array(values, dtype=str) if values else np.array([], dtype="U1")
        elif field.annotation is int:
            column = np.array(values, dtype=np.int64)
        else:
            column = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        table[name] = column
        table[name].unit = _unit(name)
        table[name].description = field.description
    table.meta.update(
        {
            "finder": catalog.finder,
            "finder_version": catalog.finder_version,
            "image": catalog.image,
            "created_at": catalog.created_at.isoformat(),
        }
    )
    return table


def _write_csv(catalog: Catalog, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CATALOG_COLUMNS)
        writer.writeheader()
        for source in catalog.sources:
            writer.writerow({k: ("" if v is None else v) for k, v in source.model_dump().items()})


def _region_line(source: CatalogSource) -> str:
    label = f" # text={{{source.component_id}}}"
    if source.ra_deg is None or source.dec_deg is None:
        x, y = source.x_pix + 1.0, source.y_pix + 1.0
        return f"image;circle({x:.3f},{y:.3f},{_DEFAULT_MARKER_PX:.1f}){label}"
    where = f"{source.ra_deg:.7f},{source.dec_deg:+.7f}"
    if source.maj_arcsec is not None and source.min_arcsec is not None:
        # DS9 ellipses take semi-axes, and their angle runs from west towards north (PA + 90).
        angle = ((source.pa_deg or 0.0) + 90.0) % 360.0
        return (
            f'ellipse({where},{source.maj_arcsec / 2:.3f}",{source.min_arcsec / 2:.3f}",{angle:.3f}){label}'
        )
    radius = source.maj_arcsec / 2 if source.maj_arcsec is not None else _DEFAULT_REGION_RADIUS_ARCSEC
    return f'circle({where},{radius:.3f}"){label}'


def write_ds9_regions(catalog: Catalog, path: Path) -> None:
    """DS9 region file: a header, then exactly one shape line per source."""
    lines = [
        "# Region file format: DS9 version 4.1",
        f"# {catalog.finder} {catalog.finder_version} on {catalog.image}",
        'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1 edit=1 move=1',
        "fk5",
    ]
    lines.extend(_region_line(source) for source in catalog.sources)
    path.write_text("\n".join(lines) + "\n")


def write_products(catalog: Catalog, out_dir: Path, base: str) -> dict[str, Path]:
    """Write ``catalog-<base>.{json,csv,vot}`` and ``ds9-<base>.reg``; return them keyed by format."""
    if not _BASE_RE.match(base):
        raise ValueError(f"invalid product base name {base!r}: use letters, digits, '.', '_', '+', '-'")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"catalog-{base}.json",
        "csv": out_dir / f"catalog-{base}.csv",
        "votable": out_dir / f"catalog-{base}.vot",
        "ds9": out_dir / f"ds9-{base}.reg",
    }
    paths["json"].write_text(catalog.model_dump_json(indent=2) + "\n")
    _write_csv(catalog, paths["csv"])
    _table(catalog).write(paths["votable"], format="votable", overwrite=True)
    write_ds9_regions(catalog, paths["ds9"])
    return paths


def north_angle(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Local direction of north at pixels (x, y), in radians counter-clockwise from +x, and the handedness:
    +1.0 when east lies counter-clockwise from north (the usual east-left sky view), else -1.0."""
    celestial = wcs.celestial
    ra, dec = celestial.all_pix2world(x, y, 0)
    step = float(np.mean(proj_plane_pixel_scales(celestial)))
    sign = np.where(dec + step <= 90.0, 1.0, -1.0)  # step south instead at the pole
    xn, yn = celestial.all_world2pix(ra, dec + sign * step, 0)
    theta = np.arctan2((yn - y) * sign, (xn - x) * sign)
    handedness = 1.0 if np.linalg.det(celestial.pixel_scale_matrix) < 0 else -1.0
    return theta, handedness


def pixel_angle_to_pa(wcs: WCS, x: np.ndarray, y: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """Convert an axis angle in the pixel frame (radians from +x) to a position angle in degrees [0, 180)."""
    theta, hand = north_angle(wcs, x, y)
    pa: np.ndarray = np.mod(np.degrees(hand * (angle_rad - theta)), 180.0)
    return pa


def pa_to_pixel_angle(wcs: WCS, x: np.ndarray, y: np.ndarray, pa_deg: np.ndarray) -> np.ndarray:
    """Inverse of ``pixel_angle_to_pa``, in degrees counter-clockwise from +x (what matplotlib expects)."""
    theta, hand = north_angle(wcs, x, y)
    angle: np.ndarray = np.degrees(theta) + hand * pa_deg
    return angle


def _marker_geometry(
    catalog: Catalog, wcs: WCS | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre, full axes (pixels) and angle (degrees from +x) of each source's marker."""
    src = catalog.sources
    x = np.array([s.x_pix for s in src], dtype=float)
    y = np.array([s.y_pix for s in src], dtype=float)
    width = np.full(len(src), 2 * _DEFAULT_MARKER_PX)
    height = width.copy()
    angle = np.zeros(len(src))
    if wcs is None or not src:
        return x, y, width, height, angle
    scale_arcsec = float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * 3600.0
    maj = np.array([np.nan if s.maj_arcsec is None else s.maj_arcsec for s in src])
    mnr = np.array([np.nan if s.min_arcsec is None else s.min_arcsec for s in src])
    pa = np.array([0.0 if s.pa_deg is None else s.pa_deg for s in src])
    sized = np.isfinite(maj) & np.isfinite(mnr)
    width[sized] = maj[sized] / scale_arcsec
    height[sized] = mnr[sized] / scale_arcsec
    angle[sized] = pa_to_pixel_angle(wcs, x[sized], y[sized], pa[sized])
    return x, y, width, height, angle


def write_preview_png(
    image_data: np.ndarray, wcs_header: fits.Header | None, catalog: Catalog, path: Path
) -> Path:
    """Render the image (linear 0.5-99 percentile stretch) with one ellipse per source.

    Name the file ``plot_<base>.png``: that is what the caesar-rest compatible API looks for.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    data = np.asarray(image_data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"preview needs a 2-D image, got shape {data.shape}")
    ny, nx = data.shape
    step = max(1, math.ceil(max(ny, nx) / 2048))  # decimate huge images; plotting stays in full-res pixels
    shown = data[::step, ::step]
    finite = shown[np.isfinite(shown)]
    vmin, vmax = np.percentile(finite, [0.5, 99.0]) if finite.size else (0.0, 1.0)
    if not vmax > vmin:
        vmax = vmin + 1.0

    wcs: WCS | None = None
    if wcs_header is not None:
        candidate = WCS(wcs_header).celestial
        if candidate.has_celestial and candidate.naxis == 2:
            wcs = candidate
    fig = Figure(figsize=(8, 8), dpi=100)  # no pyplot: nothing global to leak or close
    ax = fig.add_subplot(projection=wcs) if wcs is not None else fig.add_subplot()
    ax.imshow(
        shown,
        origin="lower",
        cmap="gray",
        vmin=float(vmin),
        vmax=float(vmax),
        interpolation="nearest",
        extent=(-0.5, (shown.shape[1]) * step - 0.5, -0.5, (shown.shape[0]) * step - 0.5),
    )
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    x, y, width, height, angle = _marker_geometry(catalog, wcs)
    patches = [
        Ellipse((float(xi), float(yi)), float(w), float(h), angle=float(a))
        for xi, yi, w, h, a in zip(x, y, width, height, angle, strict=True)
    ]
    if patches:
        ax.add_collection(PatchCollection(patches, facecolor="none", edgecolor="lime", linewidth=0.8))
    ax.set_title(f"{catalog.image}: {len(catalog.sources)} sources ({catalog.finder})")
    if wcs is not None:
        ax.set_xlabel("RA")
        ax.set_ylabel("Dec")
    else:
        ax.set_xlabel("x (pix)")
        ax.set_ylabel("y (pix)")
    fig.savefig(path)
    return path
