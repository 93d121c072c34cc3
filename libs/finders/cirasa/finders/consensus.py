"""A consensus catalogue: several finders' catalogues of one image merged, each source with its provenance
and its vote.

The catalogues are merged by ``cirasa.finders.compare.merge`` (one to one within a radius, closest first,
at the members' mean positions). A merged source is kept when

* at least ``min_votes`` finders found it (by default a majority of the finders that ran, and at least 2
  when 2 or more ran): a noise peak is rarely found by two different methods at one place; or
* one of its members has a peak signal-to-noise ratio above ``solo_snr`` (default 10): a bright source
  that only one finder reports (another one blended it into a neighbour, or lost it in a bright
  source's background) is real.

A member's signal-to-noise is its peak over the noise of its finder's catalogue (the median peak error,
else the median peak / snr, as ``compare.table_from_catalog`` measures it), else over the image's noise
given by the caller. Components without a sky position cannot be matched and take no part.

The kept sources form an ordinary ``Catalog`` (so every product works unchanged): the position is the
members' mean (pixel position likewise), fluxes, their errors, the position errors and ``snr`` are the
medians of the members', the shape (axes, angle and their errors) is the one measured by the member of
highest signal-to-noise. ``source_id`` is the merged source's id (``M<k>``) and ``finder`` names the
finders that found it, joined by ``+`` (``sep+photutils``). The ``Catalog`` schema allows no extra
fields, so the full provenance (every member's id, position, fluxes and offset, and every merged
source's vote, the dropped ones too) is the ``ConsensusReport``, written as ``consensus-<image>.json``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cirasa.finders.catalog import Catalog, CatalogSource
from cirasa.finders.compare import (
    DEFAULT_RADIUS_ARCSEC,
    MergedCatalog,
    MergedMember,
    MergedSource,
    merge,
    table_from_catalog,
)

FINDER = "consensus"
FINDER_VERSION = "1"
DEFAULT_SOLO_SNR = 10.0
FINDER_JOIN = "+"

_MEDIAN_FIELDS = (
    "ra_err_arcsec",
    "dec_err_arcsec",
    "peak_flux_jy",
    "peak_flux_err_jy",
    "int_flux_jy",
    "int_flux_err_jy",
    "snr",
)
_SHAPE_FIELDS = ("maj_arcsec", "maj_err_arcsec", "min_arcsec", "min_err_arcsec", "pa_deg", "pa_err_deg")

Reason = Literal["votes", "bright", "dropped"]


class ConsensusError(ValueError):
    """The catalogues cannot be combined as asked; the message says why."""


def default_min_votes(n_finders: int) -> int:
    """A majority of the finders that ran, and at least 2 when 2 or more ran."""
    if n_finders < 2:
        return 1
    return max(2, n_finders // 2 + 1)


class SourceVote(BaseModel):
    """The vote on one merged source."""

    id: str
    n_votes: int
    finders: list[str]
    best_snr: float | None = Field(description="highest peak signal-to-noise ratio among the members")
    kept: bool
    reason: Reason = Field(description="votes: enough finders; bright: one finder, above solo_snr")


class ConsensusReport(BaseModel):
    """Everything behind a consensus catalogue: the rule, each finder's noise, the full merged catalogue
    and the vote on every merged source (kept or not)."""

    finder: str = FINDER
    image: str
    finders: list[str]
    failed: dict[str, str] = Field(default_factory=dict, description="finders that did not run, and why")
    min_votes: int
    solo_snr: float
    noise_jy: dict[str, float | None]
    n_merged: int
    n_kept: int
    votes: list[SourceVote]
    merged: MergedCatalog


@dataclass(frozen=True)
class Consensus:
    catalog: Catalog
    report: ConsensusReport


def build_consensus(
    catalogs: Sequence[Catalog],
    *,
    min_votes: int | None = None,
    solo_snr: float = DEFAULT_SOLO_SNR,
    image_noise_jy: float | None = None,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    image: str | None = None,
    options: Mapping[str, Any] | None = None,
    failed: Mapping[str, str] | None = None,
) -> Consensus:
    """Merge ``catalogs`` (one per finder, of one image) and keep the sources the vote accepts.

    ``image`` defaults to the first catalogue's; ``options`` (the run's parameters) go into the
    catalogue's ``options`` together with the rule; ``failed`` (finder -> message) is recorded.
    """
    if not catalogs:
        raise ConsensusError("no catalogue to combine: at least one finder must have run")
    votes_needed = default_min_votes(len(catalogs)) if min_votes is None else min_votes
    if votes_needed < 1:
        raise ConsensusError(f"min_votes must be at least 1, got {min_votes}")
    if not (math.isfinite(solo_snr) and solo_snr > 0):
        raise ConsensusError(f"solo_snr must be a positive number, got {solo_snr}")
    tables = [table_from_catalog(c) for c in catalogs]
    merged = merge(tables, [Path(f"{c.finder}.json") for c in catalogs], radius_arcsec)
    labels = [entry.label for entry in merged.inputs]
    noise = {label: t.noise_jy or image_noise_jy for label, t in zip(labels, tables, strict=True)}
    by_component = {
        label: {s.component_id: s for s in c.sources} for label, c in zip(labels, catalogs, strict=True)
    }
    votes = [_vote(source, noise, votes_needed, solo_snr) for source in merged.sources]
    sources = [
        _consensus_source(k, source, by_component, noise)
        for k, (source, vote) in enumerate(zip(merged.sources, votes, strict=True), 1)
        if vote.kept
    ]
    name = image or catalogs[0].image
    report = ConsensusReport(
        image=name,
        finders=labels,
        failed=dict(failed or {}),
        min_votes=votes_needed,
        solo_snr=solo_snr,
        noise_jy=noise,
        n_merged=len(merged.sources),
        n_kept=len(sources),
        votes=votes,
        merged=merged,
    )
    settings = {
        **(options or {}),
        "finders": labels,
        "finder_versions": {label: c.finder_version for label, c in zip(labels, catalogs, strict=True)},
        "failed": sorted(report.failed),
        "min_votes": votes_needed,
        "solo_snr": solo_snr,
        "radius_arcsec": radius_arcsec,
        "noise_jy": noise,
        "n_merged": report.n_merged,
    }
    catalog = Catalog(
        finder=FINDER, finder_version=FINDER_VERSION, options=settings, image=name, sources=sources
    )
    return Consensus(catalog, report)


def member_snr(member: MergedMember, noise: Mapping[str, float | None]) -> float | None:
    """The member's peak over its finder's noise; None when either is unknown."""
    sigma = noise.get(member.finder)
    if member.peak_flux_jy is None or sigma is None or not sigma > 0:
        return None
    return member.peak_flux_jy / sigma


def _vote(
    source: MergedSource, noise: Mapping[str, float | None], min_votes: int, solo_snr: float
) -> SourceVote:
    snrs = [s for s in (member_snr(m, noise) for m in source.members) if s is not None]
    best = max(snrs) if snrs else None
    reason: Reason = "dropped"
    if source.n_finders >= min_votes:
        reason = "votes"
    elif best is not None and best > solo_snr:
        reason = "bright"
    return SourceVote(
        id=source.id,
        n_votes=source.n_finders,
        finders=source.finders,
        best_snr=best,
        kept=reason != "dropped",
        reason=reason,
    )


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(known)) if known else None


def _consensus_source(
    k: int,
    source: MergedSource,
    by_component: Mapping[str, Mapping[str, CatalogSource]],
    noise: Mapping[str, float | None],
) -> CatalogSource:
    """The ``k``-th merged source as a catalogue row (the module docstring says what comes from where)."""
    rows = [by_component[m.finder][m.component_id] for m in source.members]
    brightest = max(
        zip(source.members, rows, strict=True), key=lambda pair: member_snr(pair[0], noise) or -math.inf
    )[1]
    values: dict[str, Any] = {name: _median([getattr(r, name) for r in rows]) for name in _MEDIAN_FIELDS}
    values.update({name: getattr(brightest, name) for name in _SHAPE_FIELDS})
    return CatalogSource(
        source_id=source.id,
        component_id=f"{source.id}c1",
        island_id=k,
        ra_deg=source.ra_deg,
        dec_deg=source.dec_deg,
        x_pix=statistics.fmean(r.x_pix for r in rows),
        y_pix=statistics.fmean(r.y_pix for r in rows),
        finder=FINDER_JOIN.join(source.finders),
        **values,
    )
