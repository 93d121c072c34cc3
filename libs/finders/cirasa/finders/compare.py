"""Cross-matching catalogues: a finder against the truth or against another finder, and merging finders.

Sources are matched on the sky within a radius (by default one beam FWHM of the CIRASA test maps,
15 arcsec), one to one, closest pair first: all pairs within the radius are sorted by separation and
a pair is kept when neither of its two sources is taken yet.

``compare(detections, reference)`` scores a catalogue the way research/finder-anchors.md §3 does:

* targets: reference point sources whose peak is at least ``snr_min`` times the noise (in a finder's
  catalogue used as the reference every source counts as a point source);
* completeness = matched targets / targets (any reference source, point or extended, of any flux,
  may be matched);
* reliability = matched detections / detections;
* false = detections with no reference source within the radius; duplicates = the other unmatched
  detections, i.e. second detections of a reference source that is already matched;
* median positional offset (arcsec) and median peak-flux ratio (detection / reference) over all
  matched pairs.

``merge(tables)`` combines several finders' catalogues into one: each source keeps which finders
found it, their identifiers and fluxes, and sits at the mean of their positions.

Catalogues are read from the project's JSON or CSV (``cirasa.finders.catalog``) or from a truth CSV
(``cirasa.finders.simulation`` or the older ``cirasa.finders.imaging.write_truth_csv`` columns).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky
from pydantic import BaseModel, Field

from cirasa.finders.catalog import Catalog, read_catalog_json

DEFAULT_RADIUS_ARCSEC = 15.0
DEFAULT_SNR_MIN = 5.0
TRUTH_LABEL = "truth"


class CompareError(ValueError):
    """A catalogue cannot be read or compared; the message says why."""


@dataclass(frozen=True)
class SourceTable:
    """The columns a comparison needs, one entry per source, with NaN for unknown fluxes."""

    label: str
    kind: str  # "truth" or "catalog"
    source_ids: list[str]
    component_ids: list[str]
    ra: np.ndarray  # deg
    dec: np.ndarray  # deg
    peak: np.ndarray  # Jy/beam
    flux: np.ndarray  # integrated, Jy
    point: np.ndarray  # bool: may be a target
    noise_jy: float | None = None
    finder_version: str = ""
    image: str = ""

    def __len__(self) -> int:
        return len(self.ra)

    def coords(self) -> SkyCoord:
        return SkyCoord(ra=self.ra * u.deg, dec=self.dec * u.deg, frame="icrs")


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([math.nan if v is None or v == "" else float(v) for v in values], dtype=float)


def _median_or_none(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values) & (values > 0)]
    return float(np.median(finite)) if finite.size else None


def table_from_catalog(catalog: Catalog, label: str | None = None) -> SourceTable:
    """A finder's catalogue as a table; its noise is the median peak error, else the median peak / snr.

    Components without a sky position cannot be matched and are left out.
    """
    rows = [s for s in catalog.sources if s.ra_deg is not None and s.dec_deg is not None]
    peak = _floats([s.peak_flux_jy for s in rows])
    peak_err = _floats([s.peak_flux_err_jy for s in rows])
    snr = _floats([s.snr for s in rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = _median_or_none(peak_err)
        if noise is None:
            noise = _median_or_none(peak / snr)
    return SourceTable(
        label=label or catalog.finder,
        kind="catalog",
        source_ids=[s.source_id for s in rows],
        component_ids=[s.component_id for s in rows],
        ra=_floats([s.ra_deg for s in rows]),
        dec=_floats([s.dec_deg for s in rows]),
        peak=peak,
        flux=_floats([s.int_flux_jy for s in rows]),
        point=np.ones(len(rows), dtype=bool),
        noise_jy=noise,
        finder_version=catalog.finder_version,
        image=catalog.image,
    )


def _truth_table(rows: list[dict[str, str]], label: str) -> SourceTable:
    ids = [r["id"] for r in rows]
    kinds = [(r.get("type") or "point").strip().lower() for r in rows]
    noise = _median_or_none(_floats([r.get("noise_jy") for r in rows]))
    peak = _floats([r["peak_jy"] for r in rows])
    return SourceTable(
        label=label,
        kind="truth",
        source_ids=ids,
        component_ids=ids,
        ra=_floats([r["ra"] for r in rows]),
        dec=_floats([r["dec"] for r in rows]),
        peak=peak,
        flux=_floats([r.get("flux_jy", r["peak_jy"]) for r in rows]),
        point=np.array([k == "point" for k in kinds], dtype=bool),
        noise_jy=noise,
    )


def _catalog_csv_table(rows: list[dict[str, str]], label: str | None) -> SourceTable:
    rows = [r for r in rows if r.get("ra_deg") and r.get("dec_deg")]
    finders = {r.get("finder", "") for r in rows}
    peak = _floats([r.get("peak_flux_jy") for r in rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = _median_or_none(_floats([r.get("peak_flux_err_jy") for r in rows]))
        if noise is None:
            noise = _median_or_none(peak / _floats([r.get("snr") for r in rows]))
    return SourceTable(
        label=label or (finders.pop() if len(finders) == 1 else "catalog"),
        kind="catalog",
        source_ids=[r["source_id"] for r in rows],
        component_ids=[r["component_id"] for r in rows],
        ra=_floats([r["ra_deg"] for r in rows]),
        dec=_floats([r["dec_deg"] for r in rows]),
        peak=peak,
        flux=_floats([r.get("int_flux_jy") for r in rows]),
        point=np.ones(len(rows), dtype=bool),
        noise_jy=noise,
    )


def load_table(path: Path, label: str | None = None) -> SourceTable:
    """Read a catalogue JSON, a catalogue CSV or a truth CSV."""
    if not path.is_file():
        raise CompareError(f"no such file: {path}")
    if path.suffix.lower() == ".json":
        try:
            return table_from_catalog(read_catalog_json(path), label)
        except ValueError as exc:
            raise CompareError(f"{path.name} is not a CIRASA catalogue JSON: {exc}") from None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    if {"component_id", "ra_deg", "dec_deg"} <= columns:
        return _catalog_csv_table(rows, label)
    if {"id", "ra", "dec", "peak_jy"} <= columns:
        return _truth_table(rows, label or TRUTH_LABEL)
    raise CompareError(
        f"{path.name}: not a catalogue (JSON, or CSV with component_id, ra_deg, dec_deg) "
        "nor a truth CSV (id, ra, dec, peak_jy)"
    )


def match(
    reference: SourceTable, detections: SourceTable, radius_arcsec: float
) -> tuple[list[tuple[int, int, float]], np.ndarray]:
    """One-to-one pairs ``(reference index, detection index, separation in arcsec)`` within the radius,
    closest first; and, per detection, whether any reference source lies within the radius."""
    near = np.zeros(len(detections), dtype=bool)
    if len(reference) == 0 or len(detections) == 0:
        return [], near
    i_ref, i_det, sep, _ = search_around_sky(
        reference.coords(), detections.coords(), radius_arcsec * u.arcsec
    )
    sep_arcsec = np.asarray(sep.to_value(u.arcsec))
    near[i_det] = True
    order = np.lexsort((i_det, i_ref, sep_arcsec))  # by separation; ties by index, so deterministic
    used_ref: set[int] = set()
    used_det: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for r, d, s in zip(i_ref[order].tolist(), i_det[order].tolist(), sep_arcsec[order].tolist(), strict=True):
        if r in used_ref or d in used_det:
            continue
        used_ref.add(r)
        used_det.add(d)
        pairs.append((r, d, s))
    return pairs, near


@dataclass(frozen=True)
class Comparison:
    detections_label: str
    reference_label: str
    radius_arcsec: float
    snr_min: float
    noise_jy: float | None
    n_detections: int
    n_reference: int
    n_targets: int
    matched: int
    matched_targets: int
    false: int
    duplicates: int
    completeness: float | None
    reliability: float | None
    median_offset_arcsec: float | None
    median_peak_ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "detections": self.detections_label,
            "reference": self.reference_label,
            "radius_arcsec": self.radius_arcsec,
            "snr_min": self.snr_min,
            "noise_jy": self.noise_jy,
            "n_detections": self.n_detections,
            "n_reference": self.n_reference,
            "n_targets": self.n_targets,
            "matched": self.matched,
            "matched_targets": self.matched_targets,
            "false": self.false,
            "duplicates": self.duplicates,
            "completeness": self.completeness,
            "reliability": self.reliability,
            "median_offset_arcsec": self.median_offset_arcsec,
            "median_peak_ratio": self.median_peak_ratio,
        }


def compare(
    detections: SourceTable,
    reference: SourceTable,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    snr_min: float = DEFAULT_SNR_MIN,
    noise_jy: float | None = None,
) -> Comparison:
    """Score ``detections`` against ``reference`` (see the module docstring).

    ``noise_jy`` defaults to the reference's own noise (the truth file's ``noise_jy`` column, or the
    catalogue's peak errors); with ``snr_min > 0`` one of them is needed.
    """
    if not (math.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise CompareError(f"the match radius must be > 0 arcsec, got {radius_arcsec}")
    if not (math.isfinite(snr_min) and snr_min >= 0):
        raise CompareError(f"snr_min must be >= 0, got {snr_min}")
    noise = noise_jy if noise_jy is not None else reference.noise_jy
    if snr_min > 0:
        if noise is None:
            raise CompareError(
                f"the noise level of {reference.label} is unknown: give it (e.g. --noise-ujy 20) "
                "or use --snr-min 0"
            )
        if not (math.isfinite(noise) and noise > 0):
            raise CompareError(f"the noise level must be > 0, got {noise}")
    pairs, near = match(reference, detections, radius_arcsec)
    with np.errstate(invalid="ignore"):
        targets = reference.point & (reference.peak >= snr_min * (noise or 0.0))
    matched_ref = np.zeros(len(reference), dtype=bool)
    matched_det = np.zeros(len(detections), dtype=bool)
    offsets: list[float] = []
    ratios: list[float] = []
    for r, d, sep in pairs:
        matched_ref[r] = matched_det[d] = True
        offsets.append(sep)
        ref_peak, det_peak = reference.peak[r], detections.peak[d]
        if math.isfinite(ref_peak) and math.isfinite(det_peak) and ref_peak > 0:
            ratios.append(float(det_peak / ref_peak))
    n_targets = int(targets.sum())
    matched_targets = int((targets & matched_ref).sum())
    unmatched = ~matched_det
    return Comparison(
        detections_label=detections.label,
        reference_label=reference.label,
        radius_arcsec=radius_arcsec,
        snr_min=snr_min,
        noise_jy=noise,
        n_detections=len(detections),
        n_reference=len(reference),
        n_targets=n_targets,
        matched=len(pairs),
        matched_targets=matched_targets,
        false=int((unmatched & ~near).sum()),
        duplicates=int((unmatched & near).sum()),
        completeness=matched_targets / n_targets if n_targets else None,
        reliability=len(pairs) / len(detections) if len(detections) else None,
        median_offset_arcsec=float(np.median(offsets)) if offsets else None,
        median_peak_ratio=float(np.median(ratios)) if ratios else None,
    )


class MergedMember(BaseModel):
    """One finder's detection of a merged source."""

    finder: str
    source_id: str
    component_id: str
    ra_deg: float
    dec_deg: float
    peak_flux_jy: float | None = None
    int_flux_jy: float | None = None
    separation_arcsec: float = Field(description="from the merged position")


class MergedSource(BaseModel):
    id: str
    ra_deg: float = Field(description="mean of the members' positions")
    dec_deg: float
    n_finders: int
    finders: list[str]
    members: list[MergedMember]


class MergedInput(BaseModel):
    label: str
    kind: str
    file: str
    finder_version: str = ""
    image: str = ""
    n_sources: int


class MergedCatalog(BaseModel):
    """Several finders' catalogues combined; each source says which finders found it."""

    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    radius_arcsec: float
    inputs: list[MergedInput]
    sources: list[MergedSource]


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _radec(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    ra = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def _angle_arcsec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles between rows of unit vectors, in arcsec (atan2 of |a x b| and a.b: exact at small angles)."""
    sine = np.linalg.norm(np.cross(a, b), axis=1)
    cosine = np.einsum("ij,ij->i", a, b)
    angle: np.ndarray = np.degrees(np.arctan2(sine, cosine)) * 3600.0
    return angle


def unique_labels(tables: list[SourceTable], files: list[Path]) -> list[str]:
    """The tables' labels, made unique with the file name (and then a counter) where they repeat."""
    counts: dict[str, int] = {}
    for t in tables:
        counts[t.label] = counts.get(t.label, 0) + 1
    labels: list[str] = []
    for t, f in zip(tables, files, strict=True):
        label = t.label if counts[t.label] == 1 else f"{t.label}:{f.stem}"
        base, k = label, 2
        while label in labels:
            label, k = f"{base}#{k}", k + 1
        labels.append(label)
    return labels


def merge(
    tables: list[SourceTable], files: list[Path], radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
) -> MergedCatalog:
    """Merge catalogues in the given order: each one is matched (one to one, closest first) against the
    merged sources so far, at their current mean positions; what it does not match starts new sources."""
    if not (math.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise CompareError(f"the match radius must be > 0 arcsec, got {radius_arcsec}")
    labels = unique_labels(tables, files)
    vectors = [_unit_vectors(table.ra, table.dec) for table in tables]
    members, sums = _group(tables, vectors, radius_arcsec)
    inputs = [
        MergedInput(
            label=label,
            kind=t.kind,
            file=f.name,
            finder_version=t.finder_version,
            image=t.image,
            n_sources=len(t),
        )
        for label, t, f in zip(labels, tables, files, strict=True)
    ]
    sources = _merged_sources(tables, labels, vectors, members, sums)
    return MergedCatalog(radius_arcsec=radius_arcsec, inputs=inputs, sources=sources)


def _group(
    tables: list[SourceTable], vectors: list[np.ndarray], radius_arcsec: float
) -> tuple[list[dict[int, int]], np.ndarray]:
    """The merged sources: per source its members (table index -> row index) and the sum of their unit
    vectors."""
    members: list[dict[int, int]] = []
    sums = np.empty((0, 3))
    for t_index, table in enumerate(tables):
        taken = np.zeros(len(table), dtype=bool)
        if members and len(table):
            ra, dec = _radec(sums)
            current = SkyCoord(ra=ra * u.deg, dec=dec * u.deg)
            here = SkyCoord(ra=table.ra * u.deg, dec=table.dec * u.deg)
            i_m, i_t, sep, _ = search_around_sky(current, here, radius_arcsec * u.arcsec)
            order = np.lexsort((i_t, i_m, sep.to_value(u.arcsec)))
            used: set[int] = set()
            for m, row in zip(i_m[order].tolist(), i_t[order].tolist(), strict=True):
                if m in used or taken[row]:
                    continue
                used.add(m)
                taken[row] = True
                members[m][t_index] = row
                sums[m] += vectors[t_index][row]
        new_rows = np.flatnonzero(~taken)
        members.extend({t_index: int(row)} for row in new_rows)
        sums = np.vstack([sums, vectors[t_index][new_rows]])
    return members, sums


def _merged_sources(
    tables: list[SourceTable],
    labels: list[str],
    vectors: list[np.ndarray],
    members: list[dict[int, int]],
    sums: np.ndarray,
) -> list[MergedSource]:
    """The merged sources at their members' mean positions, each member with its offset from there."""
    ra, dec = _radec(sums) if len(sums) else (np.empty(0), np.empty(0))
    centres = _unit_vectors(ra, dec)
    group_of: list[np.ndarray] = [np.full(len(t), -1, dtype=np.int64) for t in tables]
    for k, found in enumerate(members):
        for t_index, row in found.items():
            group_of[t_index][row] = k
    separations = [
        _angle_arcsec(centres[group_of[t]], vectors[t]).tolist() if len(tables[t]) else []
        for t in range(len(tables))
    ]
    columns = [
        (t.ra.tolist(), t.dec.tolist(), t.peak.tolist(), t.flux.tolist(), t.source_ids, t.component_ids)
        for t in tables
    ]
    sources: list[MergedSource] = []
    for k, found in enumerate(members):
        rows: list[MergedMember] = []
        for t_index, row in sorted(found.items()):
            t_ra, t_dec, t_peak, t_flux, t_sources, t_components = columns[t_index]
            peak, flux = t_peak[row], t_flux[row]
            rows.append(
                MergedMember(
                    finder=labels[t_index],
                    source_id=t_sources[row],
                    component_id=t_components[row],
                    ra_deg=t_ra[row],
                    dec_deg=t_dec[row],
                    peak_flux_jy=peak if math.isfinite(peak) else None,
                    int_flux_jy=flux if math.isfinite(flux) else None,
                    separation_arcsec=separations[t_index][row],
                )
            )
        sources.append(
            MergedSource(
                id=f"M{k + 1}",
                ra_deg=float(ra[k]),
                dec_deg=float(dec[k]),
                n_finders=len(rows),
                finders=[m.finder for m in rows],
                members=rows,
            )
        )
    return sources
