"""Tile-parallel source finding of large maps: split an image into overlapping tiles, merge their catalogues.

``plan_tiles`` cuts a ``width`` x ``height`` image into ``per_side`` x ``per_side`` tiles. Each tile *owns*
a core, and the cores partition the image; the tile itself is its core grown by ``overlap_px`` on every
side (clipped to the image), so that a finder run on it sees every source of its core with some sky
around it. ``write_tile`` writes a tile's pixels as a FITS whose WCS is the full image's shifted by the
tile's origin (every other header keyword, the beam included, is kept), so a finder run on it reports
correct RA/Dec. ``merge_tiles`` keeps each tile's sources that lie in its core and drops the others,
which belong to a neighbour.

Pixel positions: ``CatalogSource.x_pix``/``y_pix`` are 0-based pixels of the image the finder ran on,
i.e. tile-local. ``merge_tiles`` adds the tile's ``x0``/``y0`` to get full-image pixels; it decides
ownership on those and writes them into the merged catalogue. RA/Dec are taken as the finder gave them
(the tile's WCS is the full image's, shifted, so they are already full-image sky positions). No WCS is
needed to merge.

Ownership near core edges: pixel ``i`` covers ``[i - 0.5, i + 0.5)``, so a source belongs to the core
holding the pixel its position falls in. Two tiles measure the same source at slightly different
positions (their background estimates differ), so a source within a fraction of a pixel of a core
edge could be claimed by both tiles, or by neither. Sources within ``TIE_MARGIN_PX`` of a shared core
edge are therefore settled together: the detection lying deepest inside its own core wins, and a
detection from another tile within ``SAME_SOURCE_PX`` of a winner is the same source and is dropped; an
unclaimed detection within the margin outside its own core is kept (no neighbour reported it).

``merge_tiles`` takes the image's size from the cores it is given; a tile left out (its job failed, say)
simply leaves its core empty.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import FITSFixedWarning

from cirasa.finders.catalog import Catalog, CatalogSource

#: half-width in pixels of the band around a shared core edge where neighbouring tiles' claims are settled
TIE_MARGIN_PX = 1.5
#: detections from two tiles closer than this (pixels) in the tie band are one source
SAME_SOURCE_PX = 2.0

# header keywords that describe the stored data rather than the sky; the output HDU sets its own
_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK"}
_STALE = {"CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT"}
_DATA_KEY = re.compile(
    r"^(NAXIS\d*|Z(IMAGE|BITPIX|NAXIS\d*|TILE\d*|CMPTYPE|NAME\d*|VAL\d*|QUANTIZ|DITHER0|SIMPLE|EXTEND"
    r"|BLOCKED|TENSION|PCOUNT|GCOUNT|HECKSUM|DATASUM|BLANK|SCALE|ZERO))$"
)


@dataclass(frozen=True)
class Tile:
    """One tile of a plan. Boxes are 0-based pixel ranges of the full image, end exclusive."""

    index: int  # row-major, 0-based
    row: int
    col: int
    x0: int
    y0: int
    x1: int
    y1: int
    core: tuple[int, int, int, int]  # (cx0, cy0, cx1, cy1): the part this tile owns

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


ALIGN_PX = 64
"""Tile edges on multiples of this put each tile's background mesh cells where the whole map's are,
for a finder whose mesh is a power of two up to it (sep's, in its runner): a tile then estimates the
background as the whole map does, and finds the same faint sources."""


def _cuts(length: int, parts: int, align: int = 1) -> list[int]:
    """``parts + 1`` boundaries splitting ``range(length)`` into near-equal parts, the inner ones
    rounded to multiples of ``align``."""
    cuts = [(i * length) // parts for i in range(parts + 1)]
    return [0, *(align * round(c / align) for c in cuts[1:-1]), length]


def plan_tiles(width: int, height: int, per_side: int, overlap_px: int, align_px: int = 1) -> list[Tile]:
    """``per_side`` x ``per_side`` tiles, row-major (row = y): near-equal cores partitioning the image, each
    tile its core grown by ``overlap_px`` on every side and clipped to the image. With ``align_px``, the
    cores' inner edges and the overlap are rounded to its multiples (see ``ALIGN_PX``)."""
    if width < 1 or height < 1:
        raise ValueError(f"the image must be at least 1x1 pixels, got {width}x{height}")
    if per_side < 1:
        raise ValueError(f"per_side must be >= 1, got {per_side}")
    if overlap_px < 0:
        raise ValueError(f"overlap_px must be >= 0, got {overlap_px}")
    if align_px < 1:
        raise ValueError(f"align_px must be >= 1, got {align_px}")
    overlap_px = -(-overlap_px // align_px) * align_px
    xs, ys = _cuts(width, per_side, align_px), _cuts(height, per_side, align_px)
    smallest = min(min(b - a for a, b in itertools.pairwise(cuts)) for cuts in (xs, ys))
    needed = 2 * overlap_px + 1
    if smallest < needed:
        raise ValueError(
            f"{per_side}x{per_side} tiles of a {width}x{height} image have cores as small as {smallest} px, "
            f"less than 2 * overlap + 1 = {needed} px: use fewer tiles or a smaller overlap"
        )
    tiles: list[Tile] = []
    for row in range(per_side):
        for col in range(per_side):
            cx0, cx1, cy0, cy1 = xs[col], xs[col + 1], ys[row], ys[row + 1]
            tiles.append(
                Tile(
                    index=row * per_side + col,
                    row=row,
                    col=col,
                    x0=max(0, cx0 - overlap_px),
                    y0=max(0, cy0 - overlap_px),
                    x1=min(width, cx1 + overlap_px),
                    y1=min(height, cy1 + overlap_px),
                    core=(cx0, cy0, cx1, cy1),
                )
            )
    return tiles


@dataclass(frozen=True)
class _Plane:
    """Where the 2-D image sits in an HDU: its numpy axes (row, column) among the degenerate ones."""

    hdu_index: int
    shape: tuple[int, ...]  # numpy order
    row_axis: int
    col_axis: int


def _find_plane(hdul: fits.HDUList, name: str) -> _Plane:
    """The first image HDU whose data has exactly two axes longer than 1 (as the finders read images)."""
    for i, hdu in enumerate(hdul):
        if not hdu.is_image:
            continue
        shape = tuple(int(n) for n in (hdu.shape or ()))
        if not shape or 0 in shape:
            continue
        big = [axis for axis, n in enumerate(shape) if n != 1]
        if len(big) == 2:
            return _Plane(i, shape, big[0], big[1])
    raise ValueError(f"no 2-D image data in {name}")


def _open(image: Path) -> fits.HDUList:
    if not image.is_file():
        raise ValueError(f"image not found: {image}")
    try:
        return fits.open(image, memmap=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"not a readable FITS file: {image.name} ({exc})") from None


def image_size(image: Path) -> tuple[int, int]:
    """(width, height) of the image's 2-D plane, read from the headers only."""
    with _open(image) as hdul:
        plane = _find_plane(hdul, image.name)
    return plane.shape[plane.col_axis], plane.shape[plane.row_axis]


def _tile_header(header: fits.Header, plane: _Plane, tile: Tile) -> fits.Header:
    """The image's header with the data keywords dropped and the reference pixel shifted to the tile."""
    out = fits.Header()
    for card in header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key in _STALE or _DATA_KEY.match(key):
            continue
        out.append(card, end=True)
    ndim = len(plane.shape)
    fits_x, fits_y = ndim - plane.col_axis, ndim - plane.row_axis  # FITS numbers axes in reverse
    out[f"CRPIX{fits_x}"] = float(header.get(f"CRPIX{fits_x}", 0.0)) - tile.x0
    out[f"CRPIX{fits_y}"] = float(header.get(f"CRPIX{fits_y}", 0.0)) - tile.y0
    out["CRSTILE"] = (tile.index, "cirasa tile index (row-major)")
    out["CRSTX0"] = (tile.x0, "tile origin: full-image 0-based column")
    out["CRSTY0"] = (tile.y0, "tile origin: full-image 0-based row")
    return out


def write_tile(image: Path, tile: Tile, out: Path) -> Path:
    """Write the tile's box of ``image`` to ``out`` as a primary-HDU FITS with the same axes (degenerate
    ones kept, length 1) and the header's WCS shifted, so that pixel (i, j) of the tile has the sky
    position of pixel (x0 + i, y0 + j) of the image. Reads only the tile's pixels."""
    with _open(image) as hdul:
        plane = _find_plane(hdul, image.name)
        width, height = plane.shape[plane.col_axis], plane.shape[plane.row_axis]
        if not (0 <= tile.x0 < tile.x1 <= width and 0 <= tile.y0 < tile.y1 <= height):
            raise ValueError(
                f"tile {tile.index} ({tile.x0}:{tile.x1}, {tile.y0}:{tile.y1}) "
                f"is not inside the {width}x{height} image"
            )
        index: list[slice] = [slice(0, 1)] * len(plane.shape)
        index[plane.row_axis] = slice(tile.y0, tile.y1)
        index[plane.col_axis] = slice(tile.x0, tile.x1)
        hdu = hdul[plane.hdu_index]
        data = np.asarray(hdu.section[tuple(index)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            header = _tile_header(hdu.header, plane, tile)
        if data.dtype.kind in "iu" and "BLANK" in hdu.header:  # unscaled integers keep their blank value
            header["BLANK"] = hdu.header["BLANK"]
    out.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data, header=header).writeto(out, overwrite=True)
    return out


@dataclass(frozen=True)
class _Seen:
    """One detection of one tile, in full-image pixels, with how deep inside its tile's core it lies."""

    part: int  # position in ``parts``
    order: int  # position in its tile's catalogue
    source: CatalogSource
    x: float
    y: float
    depth: float  # distance (px) to the nearest shared core edge: > 0 inside the core, < 0 outside


def _depth(x: float, y: float, tile: Tile, width: int, height: int) -> float:
    """Signed distance from (x, y) to the edges of the tile's core that face a neighbour; edges on the
    image border face none, so a source beyond them still counts as inside."""
    cx0, cy0, cx1, cy1 = tile.core
    sides = [
        x - (cx0 - 0.5) if cx0 > 0 else math.inf,
        (cx1 - 0.5) - x if cx1 < width else math.inf,
        y - (cy0 - 0.5) if cy0 > 0 else math.inf,
        (cy1 - 0.5) - y if cy1 < height else math.inf,
    ]
    return min(sides)


def _cell(x: float, y: float) -> tuple[int, int]:
    return math.floor(x / SAME_SOURCE_PX), math.floor(y / SAME_SOURCE_PX)


def _cells(x: float, y: float) -> Iterator[tuple[int, int]]:
    """The cell of (x, y) and its eight neighbours: every point within ``SAME_SOURCE_PX`` lies in them."""
    i, j = _cell(x, y)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            yield i + di, j + dj


def _owned(seen: list[_Seen]) -> list[_Seen]:
    """The detections to keep: those well inside their core, and the tie band settled (module docstring)."""
    kept = [s for s in seen if s.depth >= TIE_MARGIN_PX]
    grid: dict[tuple[int, int], list[_Seen]] = {}
    for s in kept:
        if s.depth < TIE_MARGIN_PX + SAME_SOURCE_PX:  # near enough to the band to be matched
            grid.setdefault(_cell(s.x, s.y), []).append(s)
    band = sorted((s for s in seen if -TIE_MARGIN_PX < s.depth < TIE_MARGIN_PX), key=lambda s: -s.depth)
    for s in band:  # deepest first: a source's best view wins
        twin = any(
            other.part != s.part and math.hypot(other.x - s.x, other.y - s.y) < SAME_SOURCE_PX
            for cell in _cells(s.x, s.y)
            for other in grid.get(cell, ())
        )
        if not twin:
            kept.append(s)
            grid.setdefault(_cell(s.x, s.y), []).append(s)
    return kept


def _tiling_options(parts: list[tuple[Tile, Catalog]], width: int, height: int) -> dict[str, Any]:
    """What the merged catalogue records of the split; the overlap is the largest a tile was grown by."""
    tiles = [tile for tile, _ in parts]
    grown = [max(t.core[0] - t.x0, t.core[1] - t.y0, t.x1 - t.core[2], t.y1 - t.core[3]) for t in tiles]
    return {
        "per_side": max(max(t.row, t.col) for t in tiles) + 1,
        "overlap_px": max(grown),
        "tiles": len(tiles),
        "width": width,
        "height": height,
    }


def merge_tiles(parts: list[tuple[Tile, Catalog]], image_name: str = "") -> Catalog:
    """One catalogue of the whole image from its tiles' catalogues (all from the same finder).

    Each tile's sources in its core are kept, the others dropped; positions become full-image pixels;
    ids become ``t<index>-<id>`` and island numbers are renumbered to stay unique. ``options`` keeps the
    tiles' finder options and adds ``tiling`` (per_side, overlap_px, tiles, width, height). ``image_name``
    names the whole image (the tiles' own names are not used).
    """
    if not parts:
        raise ValueError("no tiles to merge")
    indices = [tile.index for tile, _ in parts]
    if len(set(indices)) != len(indices):
        raise ValueError(f"a tile appears more than once: indices {sorted(indices)}")
    finders = {(catalog.finder, catalog.finder_version) for _, catalog in parts}
    if len(finders) != 1:
        raise ValueError(f"the tiles were found by different finders: {sorted(finders)}")
    width = max(tile.core[2] for tile, _ in parts)
    height = max(tile.core[3] for tile, _ in parts)
    seen = [
        _Seen(k, n, s, x, y, _depth(x, y, tile, width, height))
        for k, (tile, catalog) in enumerate(parts)
        for n, s in enumerate(catalog.sources)
        for x, y in [(s.x_pix + tile.x0, s.y_pix + tile.y0)]
    ]
    kept = sorted(_owned(seen), key=lambda s: (parts[s.part][0].index, s.order))
    islands: dict[tuple[int, int], int] = {}
    sources: list[CatalogSource] = []
    for s in kept:
        tag = f"t{parts[s.part][0].index}-"
        island = islands.setdefault((s.part, s.source.island_id), len(islands) + 1)
        sources.append(
            s.source.model_copy(
                update={
                    "source_id": tag + s.source.source_id,
                    "component_id": tag + s.source.component_id,
                    "island_id": island,
                    "x_pix": s.x,
                    "y_pix": s.y,
                }
            )
        )
    first = parts[0][1]
    options = {**first.options, "tiling": _tiling_options(parts, width, height)}
    return Catalog(
        finder=first.finder,
        finder_version=first.finder_version,
        options=options,
        image=image_name,
        sources=sources,
    )
