"""sep on a whole simulated map against sep on its 2x2 overlapping tiles, merged (cirasa.finders.tiling):
the same sources within half a beam, both ways, and none twice.

What can differ is sep itself: each tile is thresholded at ``seedthr`` times the noise rms estimated on
that tile, which is not exactly the whole map's, so a source at the threshold may be found on one and not
the other. With the runner's rms from the pixels below the background (all of them, not sep's mesh
``globalrms``) the estimates agree closely enough that none of the ~470 sources differ here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import pytest
from astropy.coordinates import search_around_sky
from astropy.io import fits

from cirasa.finders.catalog import Catalog, read_catalog_json
from cirasa.finders.compare import match, table_from_catalog
from cirasa.finders.runners import sep as sep_runner
from cirasa.finders.simulation import simulate_sky
from cirasa.finders.tiling import ALIGN_PX, image_size, merge_tiles, plan_tiles, write_tile

pytestmark = pytest.mark.slow

SIZE = 1000
DENSITY = 400.0  # per deg², ~465 sources on the map
PER_SIDE = 2
OVERLAP_PX = 64


@dataclass(frozen=True)
class Agreement:
    whole_in_tiled: float  # fraction of the whole-map sources with a tiled source within the radius
    tiled_in_whole: float
    duplicates: int  # pairs of merged sources closer than the radius
    unmatched_snr: list[float]


def _find(image: Path, out_dir: Path) -> Catalog:
    sep_runner.run(image, out_dir, sep_runner.Options(), preview=False)
    return read_catalog_json(next(out_dir.glob("catalog-*.json")))


def _tiled(image: Path, work: Path) -> tuple[Catalog, int]:
    """The merged catalogue of the image's tiles, and how many sources the tiles found in all."""
    width, height = image_size(image)
    parts = []
    for tile in plan_tiles(width, height, PER_SIDE, OVERLAP_PX, ALIGN_PX):
        tile_image = write_tile(image, tile, work / f"tile{tile.index}.fits")
        parts.append((tile, _find(tile_image, work / f"tile{tile.index}")))
    return merge_tiles(parts, image_name=image.name), sum(len(c.sources) for _, c in parts)


def _agreement(whole: Catalog, tiled: Catalog, radius_arcsec: float) -> Agreement:
    a, b = table_from_catalog(whole), table_from_catalog(tiled)
    pairs, _ = match(a, b, radius_arcsec)
    i, j, _, _ = search_around_sky(b.coords(), b.coords(), radius_arcsec * u.arcsec)
    matched_a, matched_b = {p[0] for p in pairs}, {p[1] for p in pairs}
    unmatched = [s.snr or 0.0 for k, s in enumerate(whole.sources) if k not in matched_a]
    unmatched += [s.snr or 0.0 for k, s in enumerate(tiled.sources) if k not in matched_b]
    return Agreement(len(pairs) / len(a), len(pairs) / len(b), int((i < j).sum()), unmatched)


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The map, and half its beam in arcsec (the match radius)."""
    image = tmp_path_factory.mktemp("tiling") / "sky.fits"
    truth = simulate_sky(image, size=SIZE, density_per_deg2=DENSITY, seed=0)
    assert 300 < len(truth) < 700
    return image, 0.5 * float(fits.getheader(image)["BMAJ"]) * 3600.0


def test_tiled_sep_agrees_with_whole_map_sep(sky: tuple[Path, float], tmp_path: Path) -> None:
    image, radius = sky
    whole = _find(image, tmp_path / "whole")
    tiled, seen = _tiled(image, tmp_path)

    found = _agreement(whole, tiled, radius)

    assert seen > len(tiled.sources), "the overlaps saw sources twice: the merge had duplicates to remove"
    assert found.duplicates == 0
    assert found.whole_in_tiled >= 0.999 and found.tiled_in_whole >= 0.999, found
    assert tiled.image == "sky.fits" and tiled.finder == "sep"
    assert tiled.options["tiling"] == {
        "per_side": PER_SIDE,
        "overlap_px": OVERLAP_PX,
        "tiles": PER_SIDE * PER_SIDE,
        "width": SIZE,
        "height": SIZE,
    }
