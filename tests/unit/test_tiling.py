"""Splitting a large map into overlapping tiles and merging the tiles' catalogues (cirasa.finders.tiling)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from cirasa.finders.catalog import Catalog, CatalogSource
from cirasa.finders.imaging import synthetic_header
from cirasa.finders.tiling import ALIGN_PX, Tile, image_size, merge_tiles, plan_tiles, write_tile


@pytest.mark.parametrize(
    ("width", "height", "per_side", "overlap"),
    [
        (1, 1, 1, 0),
        (100, 100, 4, 5),
        (1001, 997, 3, 10),
        (7, 13, 2, 1),
        (3600, 3600, 4, 64),
        (4097, 1023, 5, 64),
    ],
)
def test_cores_partition_the_image(width: int, height: int, per_side: int, overlap: int) -> None:
    tiles = plan_tiles(width, height, per_side, overlap)

    assert [t.index for t in tiles] == list(range(per_side * per_side))
    assert [(t.row, t.col) for t in tiles] == [(r, c) for r in range(per_side) for c in range(per_side)]
    owners = np.zeros((height, width), dtype=int)
    for t in tiles:
        cx0, cy0, cx1, cy1 = t.core
        owners[cy0:cy1, cx0:cx1] += 1
        assert (t.x0, t.y0, t.x1, t.y1) == (
            max(0, cx0 - overlap),
            max(0, cy0 - overlap),
            min(width, cx1 + overlap),
            min(height, cy1 + overlap),
        )
    assert (owners == 1).all(), "every pixel lies in exactly one core"
    widths = {t.core[2] - t.core[0] for t in tiles}
    heights = {t.core[3] - t.core[1] for t in tiles}
    assert max(widths) - min(widths) <= 1 and max(heights) - min(heights) <= 1, "near-equal cores"


def test_overlaps_are_clipped_at_the_image_border() -> None:
    tiles = plan_tiles(300, 300, 3, 10)

    corner, centre, last = tiles[0], tiles[4], tiles[8]
    assert (corner.x0, corner.y0, corner.x1, corner.y1) == (0, 0, 110, 110)
    assert (centre.x0, centre.y0, centre.x1, centre.y1) == (90, 90, 210, 210)
    assert (last.x0, last.y0, last.x1, last.y1) == (190, 190, 300, 300)
    assert centre.core == (100, 100, 200, 200)
    top_right = tiles[2]
    assert (top_right.x0, top_right.x1, top_right.y0, top_right.y1) == (190, 300, 0, 110)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((100, 100, 0, 5), "per_side must be >= 1, got 0"),
        ((100, 100, 2, -1), "overlap_px must be >= 0, got -1"),
        ((100, 100, 4, 13), "cores as small as 25 px, less than 2 * overlap + 1 = 27 px"),
        ((100, 10, 2, 3), "cores as small as 5 px, less than 2 * overlap + 1 = 7 px"),
        ((3, 100, 4, 0), "cores as small as 0 px"),
        ((0, 100, 1, 0), "at least 1x1 pixels, got 0x100"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_tiles(*args)


def test_the_smallest_useful_core_is_accepted() -> None:
    assert len(plan_tiles(100, 100, 4, 12)) == 16  # 25-px cores, 2 * 12 + 1 = 25


def _image(path: Path, size: int = 120) -> np.ndarray:
    data = np.random.default_rng(3).normal(size=(size, size)).astype(np.float32)
    header = synthetic_header(size, beam_arcsec=15.0, pixel_arcsec=4.0)
    header["CRPIX1"] = 37.25  # off-centre, so a missing shift could not go unnoticed by symmetry
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return data


def test_write_tile_keeps_the_pixels_the_wcs_and_the_beam(tmp_path: Path) -> None:
    full = tmp_path / "full.fits"
    data = _image(full)
    assert image_size(full) == (120, 120)
    tile = plan_tiles(120, 120, 3, 8)[5]  # row 1, col 2: an interior y-range, clipped at the right
    assert (tile.x0, tile.y0, tile.x1, tile.y1) == (72, 32, 120, 88)

    out = write_tile(full, tile, tmp_path / "tiles" / "t5.fits")

    full_header = fits.getheader(full)
    with fits.open(out) as hdul:
        tile_data, tile_header = hdul[0].data, hdul[0].header
    np.testing.assert_array_equal(tile_data, data[32:88, 72:120])
    assert image_size(out) == (48, 56)
    for key in ("BMAJ", "BMIN", "BPA", "BUNIT", "FREQ", "CTYPE1", "CDELT2"):
        assert tile_header[key] == full_header[key]
    i, j = np.meshgrid(np.arange(0, 48, 7), np.arange(0, 56, 5))
    tile_sky = WCS(tile_header).all_pix2world(i.ravel(), j.ravel(), 0)
    full_sky = WCS(full_header).all_pix2world(i.ravel() + 72, j.ravel() + 32, 0)
    np.testing.assert_allclose(tile_sky, full_sky, rtol=0, atol=1e-10)


def test_write_tile_reads_a_degenerate_cube_in_an_extension(tmp_path: Path) -> None:
    cube = tmp_path / "cube.fits"
    header = synthetic_header(90, beam_arcsec=15.0, pixel_arcsec=4.0)
    header["CTYPE3"], header["CRVAL3"], header["CRPIX3"], header["CDELT3"] = "FREQ", 1.4e9, 1.0, 1e6
    header["CTYPE4"], header["CRVAL4"], header["CRPIX4"], header["CDELT4"] = "STOKES", 1.0, 1.0, 1.0
    data = np.arange(90 * 80, dtype=np.float32).reshape(1, 1, 80, 90)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=data, header=header)]).writeto(cube)
    assert image_size(cube) == (90, 80)
    tile = plan_tiles(90, 80, 2, 4)[3]

    out = write_tile(cube, tile, tmp_path / "t3.fits")

    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (1, 1, 80 - tile.y0, 90 - tile.x0)
        np.testing.assert_array_equal(hdul[0].data[0, 0], data[0, 0, tile.y0 :, tile.x0 :])
        tile_wcs = WCS(hdul[0].header).celestial
        assert hdul[0].header["BMAJ"] == header["BMAJ"]
    sky = tile_wcs.all_pix2world([0, 10], [0, 20], 0)
    np.testing.assert_allclose(
        sky,
        WCS(header).celestial.all_pix2world([tile.x0, tile.x0 + 10], [tile.y0, tile.y0 + 20], 0),
        atol=1e-10,
    )


def test_a_file_without_a_2d_image_is_refused(tmp_path: Path) -> None:
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(data=np.zeros((3, 4, 5), dtype=np.float32)).writeto(cube)
    with pytest.raises(ValueError, match=r"no 2-D image data in cube\.fits"):
        image_size(cube)
    with pytest.raises(ValueError, match="image not found"):
        image_size(tmp_path / "missing.fits")


def _source(n: int, x: float, y: float) -> CatalogSource:
    return CatalogSource(
        source_id=f"S{n}",
        component_id=f"S{n}c1",
        island_id=n,
        x_pix=x,
        y_pix=y,
        ra_deg=float(n),
        finder="sep",
    )


def _seen(tile: Tile, positions: list[tuple[float, float]]) -> tuple[Tile, Catalog]:
    """The tile's catalogue of the given full-image positions inside its box, in tile-local pixels, numbered
    from 1 in each tile (as a finder does)."""
    inside = [
        (x, y)
        for x, y in positions
        if tile.x0 - 0.5 <= x < tile.x1 - 0.5 and tile.y0 - 0.5 <= y < tile.y1 - 0.5
    ]
    sources = [_source(k + 1, x - tile.x0, y - tile.y0) for k, (x, y) in enumerate(inside)]
    catalog = Catalog(finder="sep", finder_version="1.4", options={"seedthr": 5.0}, image="t.fits")
    catalog.sources.extend(sources)
    return tile, catalog


def _merged_xy(parts: list[tuple[Tile, Catalog]]) -> list[tuple[float, float]]:
    return [(s.x_pix, s.y_pix) for s in merge_tiles(parts).sources]


def test_a_source_in_an_overlap_is_kept_once_by_its_owner() -> None:
    tiles = plan_tiles(200, 200, 2, 10)  # cores split at x = 100 and y = 100
    parts = [_seen(t, [(105.0, 50.0), (96.0, 40.0), (20.0, 20.0)]) for t in tiles]
    assert sum(len(c.sources) for _, c in parts) == 5  # the first two are seen by tiles 0 and 1

    merged = merge_tiles(parts, image_name="/data/big map.fits")

    assert sorted((s.x_pix, s.y_pix) for s in merged.sources) == [(20.0, 20.0), (96.0, 40.0), (105.0, 50.0)]
    by_x = {s.x_pix: s for s in merged.sources}
    assert by_x[105.0].source_id == "t1-S1" and by_x[105.0].component_id == "t1-S1c1"
    assert by_x[96.0].source_id == "t0-S2"
    assert len({s.island_id for s in merged.sources}) == 3
    assert merged.image == "big map.fits" and merged.finder == "sep" and merged.finder_version == "1.4"
    assert merged.options == {
        "seedthr": 5.0,
        "tiling": {"per_side": 2, "overlap_px": 10, "tiles": 4, "width": 200, "height": 200},
    }


@pytest.mark.parametrize(("left", "right"), [(99.51, 99.49), (99.49, 99.51), (98.9, 100.1), (100.1, 98.9)])
def test_two_tiles_disagreeing_on_a_source_at_a_core_edge_keep_exactly_one(left: float, right: float) -> None:
    """Tile 0 owns x < 99.5, tile 1 the rest; each measures the same source a little differently."""
    tiles = plan_tiles(200, 200, 2, 10)
    parts = [_seen(tiles[0], [(left, 30.0)]), _seen(tiles[1], [(right, 30.2)])]

    assert len(_merged_xy(parts)) == 1


def test_four_tiles_seeing_a_source_at_a_core_corner_keep_exactly_one() -> None:
    tiles = plan_tiles(200, 200, 2, 10)
    jitter = [(99.6, 99.4), (99.4, 99.45), (99.55, 99.6), (99.45, 99.52)]
    parts = [_seen(t, [xy]) for t, xy in zip(tiles, jitter, strict=True)]

    assert len(_merged_xy(parts)) == 1


def test_two_sources_close_to_an_edge_inside_different_cores_are_both_kept() -> None:
    tiles = plan_tiles(200, 200, 2, 10)
    truth = [(97.0, 60.0), (102.0, 60.0)]  # 5 px apart, either side of the edge at x = 99.5

    assert sorted(_merged_xy([_seen(t, truth) for t in tiles])) == truth


def test_every_source_is_kept_exactly_once_at_full_image_positions() -> None:
    rng = np.random.default_rng(7)
    truth = rng.uniform(0.0, 499.0, size=(800, 2))
    keep = np.ones(len(truth), dtype=bool)
    for i in range(len(truth)):  # distinct sources are farther apart than the tiles' disagreement
        keep[i] = bool(np.all(np.hypot(*(truth[:i][keep[:i]] - truth[i]).T) > 4.0))
    truth = truth[keep]
    tiles = plan_tiles(500, 500, 3, 20)
    parts = []
    for t in tiles:  # every tile measures every source in its box, off by up to 0.4 px
        seen = truth + rng.uniform(-0.4, 0.4, size=truth.shape)
        parts.append(_seen(t, [(float(x), float(y)) for x, y in seen]))

    catalog = merge_tiles(parts)
    merged = np.array([(s.x_pix, s.y_pix) for s in catalog.sources])

    assert len(merged) == len(truth)
    assert len({s.island_id for s in catalog.sources}) == len(truth), "island numbers stay unique"
    assert len({s.component_id for s in catalog.sources}) == len(truth)
    nearest = np.min(np.hypot(*(merged[:, None, :] - truth[None, :, :]).transpose(2, 0, 1)), axis=0)
    assert nearest.max() < 0.6, "every true source has a merged one at its full-image position"


def test_a_source_placed_beyond_the_image_border_is_kept() -> None:
    """Only core edges shared with a neighbour decide ownership; the image's own border does not."""
    tiles = plan_tiles(200, 200, 2, 10)
    tile, catalog = _seen(tiles[0], [])
    catalog.sources.append(_source(1, -3.0, 50.0))

    assert _merged_xy([(tile, catalog)]) == [(-3.0, 50.0)]


def test_merge_refuses_what_it_cannot_merge() -> None:
    tiles = plan_tiles(200, 200, 2, 10)
    with pytest.raises(ValueError, match="no tiles to merge"):
        merge_tiles([])
    part = _seen(tiles[0], [(5.0, 5.0)])
    with pytest.raises(ValueError, match="more than once"):
        merge_tiles([part, part])
    other = _seen(tiles[1], [(150.0, 5.0)])
    other[1].finder = "aegean"
    with pytest.raises(ValueError, match="different finders"):
        merge_tiles([part, other])


@pytest.mark.parametrize(("size", "per_side"), [(3600, 4), (1000, 3), (700, 2)])
def test_aligned_tiles_start_on_the_grid_and_still_partition_the_image(size: int, per_side: int) -> None:
    tiles = plan_tiles(size, size, per_side, 50, align_px=ALIGN_PX)
    owned = np.zeros((size, size), dtype=int)
    for tile in tiles:
        cx0, cy0, cx1, cy1 = tile.core
        owned[cy0:cy1, cx0:cx1] += 1
        # every tile's box starts on the grid: its mesh cells are the whole map's
        assert tile.x0 % ALIGN_PX == 0 and tile.y0 % ALIGN_PX == 0
        assert tile.x0 == max(0, cx0 - 64)  # the overlap rounded up to the grid
    assert (owned == 1).all()
