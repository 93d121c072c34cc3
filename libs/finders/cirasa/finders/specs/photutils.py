"""The photutils app, run by ``cirasa.finders.runners.photutils``.

Defaults tuned for crowded radio maps like sep's (``specs/sep.py``; issue 15: 800^2, 15" beam in 4"
pixels, 20 uJy beam-correlated noise, 2,500 sources/deg^2 with dN/dS ~ S^-1.6 down to 3 sigma, 10%
extended; ``bench/finders.py --sky realistic``). The old defaults found 63-67% of the sources >= 5 sigma,
20-22% of those at 5-10 sigma, where a perfect 5-sigma detector finds 89%. The losses and what changed:

* the threshold's noise: photutils' per-box rms (the MAD of the sigma-clipped box) keeps the wings of
  the crowd, 22.2 uJy for 20, and the box median used as the background sat 3.6 uJy (0.18 sigma) above
  the sky: "5 sigma" was 5.6 sigma. The runner now takes the noise from the pixels below the background,
  which sources do not touch (``support.negative_rms``, shared with sep: 20.3 uJy), one value for the
  map, and the background from sep's mode estimate (2.5 median - 1.5 mean, ``SExtractorBackground``,
  1.5 uJy above the sky): the cut is at 5.15 true sigma. Pearson's 3 median - 2 mean came closer (0.8
  uJy, up to 0.4 points more completeness) but reliability fell to 99.46% on seed 2;
* the smoothing kernel: a radio map is already convolved with its beam, so its pixels are the matched-
  filter output of a point source; a further half-beam kernel lowers a point source's peak by 20% and
  the beam-correlated noise by only 11%. ``kernel-beams`` is now 0 (no smoothing; when it is set, the
  noise is measured on the smoothed map, so the threshold stays in sigmas). Half a beam: 78-80% >= 5 sigma;
* ``minarea``: a 6-sigma point source in a 3.75 px beam has 3 pixels above 5 sigma, so 5 pixels dropped
  everything below about 7 sigma. 1 pixel, as for sep: the threshold is on the peak already;
* deblending: a deblended component must still cover a third of a beam in pixels (5 here; the part of a
  point source within 70% of its peak; at least ``minarea``): with 1 pixel, the noise bumps on faint
  sources' tops became components (reliability 98.8-99.3%); 4 pixels: 99.3-99.4%, 6: 0.3 points less
  completeness. ``deblend-nlevels`` 64 (for 32) gives levels fine enough to find the saddles between
  close faint pairs in islands reaching hundreds of sigma, and ``deblend-cont`` 0.0001 (for 0.001; the
  fraction of the whole island's flux, as sep's) splits a 10-sigma neighbour off a bright island: both
  added 0.3-0.5 points; 128 levels added nothing;
* the background box: ``bkgbox`` 0 (the new default) means 16 beam FWHM rounded to a power of two (64 px
  here, the old fixed value), bounded to 16-256 px, as sep's mesh; 32 px lost 0.4-1.5 points of 5-10
  sigma sources and 128 px reliability (99.45% on seed 2).

Kept: the 5-sigma threshold, the 3-box background filter and deblending. Completeness >= 5 sigma / 5-10 /
10-25 / > 25 / extended and reliability on seeds 1, 2, 3:

* before: 66.8 / 20.1 / 82.1 / 93.4 / 76.6%, 99.9%; 65.7 / 21.2 / 83.3 / 92.8 / 77.4%, 99.9%;
  63.4 / 22.2 / 79.2 / 91.4 / 68.5%, 99.9%;
* after: 84.2 / 69.9 / 85.2 / 94.9 / 86.9%, 99.6%; 83.0 / 68.1 / 86.3 / 94.0 / 82.5%, 99.5%;
  82.1 / 68.6 / 84.8 / 93.1 / 79.0%, 99.8%;
* a perfect 5-sigma detector: 96.4 / 88.7 / 100 / 100 / 95.7% (seed 1).

Most of what it still reports falsely (4-6 of about 1,300) lies 15-20" from a true 3.5-7 sigma source
or between two faint ones: blends of the sources below 5 sigma, which are real emission but no one source.
"""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, flag, float_option, int_option
from cirasa.finders.specs.aegean import beam_options

APP = App(
    name="photutils",
    description="photutils: 2-D background, detection on the beam-smoothed image, deblending, moments",
    runner="python",
    module="cirasa.finders.runners.photutils",
    options=(
        float_option(
            "seedthr", "Detection threshold in units of the background rms", 5.0, 0.5, 1e4, "COMPACT-SOURCES"
        ),
        int_option(
            "minarea", "Minimum number of connected pixels above threshold", 1, 1, 1e4, "COMPACT-SOURCES"
        ),
        float_option(
            "deblend-cont",
            "Minimum flux fraction of a deblended component",
            0.0001,
            0.0,
            1.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        int_option(
            "deblend-nlevels",
            "Number of multi-thresholding levels for deblending",
            64,
            1,
            1000,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        flag("no-deblend", "Do not deblend blended sources", "COMPACT-SOURCES", advanced=True),
        float_option(
            "kernel-beams",
            "FWHM of the beam-shaped smoothing kernel applied before detection, in beams (0: no smoothing)",
            0.0,
            0.0,
            3.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        int_option(
            "bkgbox",
            "Box size in pixels for the background (0: about 16 beams, a power of two)",
            0,
            0,
            1e4,
            "IMGBKG",
        ),
        int_option(
            "bkgfilter", "Median filter size, in boxes, for the background", 3, 1, 99, "IMGBKG", advanced=True
        ),
        *beam_options(),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    # Deblending (most of the time) runs in as many processes as the job has cores; one core measures
    # ~1,000 sources/s and a 7200x7200 map needs about 1.7 GB.
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=1.0, max_memory_gib=4.0, duration_s=1800
    ),
)
