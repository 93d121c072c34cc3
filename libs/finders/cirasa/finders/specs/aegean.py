"""The aegean app: caesar-rest's option schema, run here by ``cirasa.finders.runners.aegean``.

Tuned for crowded radio maps (issue 15: 800^2, 4" pixels, 15" beam, 20 uJy beam-correlated noise,
2,500 sources/deg^2 with dN/dS ~ S^-1.6 down to 3 sigma, 10% extended; ``bench/finders.py --sky
realistic``). Aegean found 80-82% of the sources >= 5 sigma, but its reliability was 99.1% and 98.9% on
seeds 2 and 3. What the false detections were (matched against the truth within one beam): every one
was an extra component of a multi-component island, nearly all 15-35" from an *extended* source (2.5-4
beams): the noise on a resolved source breaks it into several curvature summits, and Aegean fits one
Gaussian per summit, so it came out as two or three overlapping broad Gaussians (20-60" each, 3-27
sigma), or as summits beyond ``fit-maxcomponents`` left unfitted at the beam's shape. Raising the limit
to fit them all, or a floor on the components' SNR (0.9 x seedthr), removed too few of them (99.0% on
seed 3) or as many real sources. What the runner now does:

* spurious components: a component whose half-maximum contour (a circle of its geometric-mean FWHM)
  overlaps that of a brighter component of its island is dropped (the catalogue's options record how
  many, ``components_overlapping``). Two sources the beam separates lie more than half their widths
  apart (15" for two point sources, the match radius itself), so blends of point sources keep both;
  a compact source on top of a resolved one is lost (12-19 of ~1,230 matched detections per seed);
* ``fit-maxcomponents`` 3 -> 5: with more summits fitted, fewer are left at the beam's shape beside
  the ones they belong to (with the rule above, seed 2: 99.34% -> 99.67% in a trial run); no slower;
* the noise: BANE's clipped rms keeps the crowd's wings (23.1 uJy for 20, so "5 sigma" was 5.8 sigma).
  BANE's rms map is scaled so that its median is the spread between the -2 and -1 sigma quantiles of
  the map minus BANE's background (21.1-21.5 uJy; the factor is ``rms_scale`` in the options), which
  sources barely reach, as for PyBDSF. ``negative_rms`` of that residual is 22.4 uJy: BANE's
  background is itself biased up by the crowd (5 uJy, a quarter sigma), which deepens the pixels below
  it; a quantile spread does not depend on the background's level. BANE's variations are kept.

Kept: ``seedthr`` 5, ``mergethr`` 2.6, BANE's ``bkgbox`` 100 / ``bkggrid`` 20 (26 and 5 beams). On the
map (``.venv/bin/python bench/finders.py --sky realistic --apps aegean --seed N``), completeness >= 5
sigma / 5-10 / 10-25 / > 25 / extended, reliability, time:

* seed 1 before: 82.3% / 58.5% / 89.0% / 96.8% / 78.1%, 99.84%, 18 s;
  after: 83.9% / 64.2% / 88.5% / 96.4% / 78.1%, 99.92%, 18 s;
* seed 2 before: 81.0% / 58.7% / 88.5% / 95.5% / 78.1%, 99.09%, 16 s;
  after: 83.1% / 65.7% / 87.5% / 95.5% / 78.1%, 99.76%, 18 s;
* seed 3 before: 79.5% / 57.9% / 87.1% / 94.6% / 73.4%, 98.90%, 15 s;
  after: 80.6% / 63.2% / 85.0% / 94.2% / 72.7%, 99.83%, 15 s;
* a perfect 5-sigma detector (seed 1): 96.4% / 88.7% / 100% / 100% / 95.7%.
"""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, Option, flag, float_option, int_option


def beam_options() -> tuple[Option, ...]:
    """Beam options shared by the finders that need a beam, for images without BMAJ/BMIN."""
    return (
        float_option(
            "beam-maj",
            "Beam FWHM major axis in arcsec, replacing the header's BMAJ/BMIN (0: from the header)",
            0.0,
            0.0,
            36000.0,
            "BEAM",
            advanced=True,
        ),
        float_option(
            "beam-min",
            "Beam FWHM minor axis in arcsec, with beam-maj (0: equal to beam-maj)",
            0.0,
            0.0,
            36000.0,
            "BEAM",
            advanced=True,
        ),
        float_option(
            "beam-pa",
            "Beam position angle in degrees east of north (default: the header's BPA, else 0)",
            0.0,
            -360.0,
            360.0,
            "BEAM",
            advanced=True,
        ),
    )


APP = App(
    name="aegean",
    description="Aegean (AegeanTools): BANE background and noise maps, then Gaussian fits of islands",
    runner="python",
    module="cirasa.finders.runners.aegean",
    options=(
        flag("save-bkgmap", "Save the background map", "OUTPUT"),
        flag("save-rmsmap", "Save the rms map", "OUTPUT"),
        int_option("bkgbox", "Box size in pixels for the background", 100, 5, 1e4, "IMGBKG"),
        int_option("bkggrid", "Grid size in pixels for the background", 20, 5, 1000, "IMGBKG"),
        float_option("seedthr", "Seed threshold in sigmas", 5.0, 0, 1e4, "COMPACT-SOURCES"),
        float_option("mergethr", "Merge (flood) threshold in sigmas", 2.6, 0, 1e4, "COMPACT-SOURCES"),
        int_option(
            "fit-maxcomponents",
            "Maximum number of components fitted per island",
            5,
            0,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        int_option("ncores", "Number of cores", 1, 1, 100, "RUN"),
        flag("no-logredir", "Do not redirect logs to file", "RUN"),
        *beam_options(),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    # BANE uses up to ncores worker processes (the rest is serial); about 90 MB per megapixel for BANE.
    # One core fits ~40 sources/s: a 3600x3600 map at 2,500 sources/deg2 takes about 15 minutes.
    cores_option="ncores",
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=1.0, max_memory_gib=4.0, duration_s=3600
    ),
)
