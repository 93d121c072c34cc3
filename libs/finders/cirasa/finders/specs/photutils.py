"""The photutils app, run by ``cirasa.finders.runners.photutils``."""

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
            "minarea", "Minimum number of connected pixels above threshold", 5, 1, 1e4, "COMPACT-SOURCES"
        ),
        float_option(
            "deblend-cont",
            "Minimum flux fraction of a deblended component",
            0.001,
            0.0,
            1.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        int_option(
            "deblend-nlevels",
            "Number of multi-thresholding levels for deblending",
            32,
            1,
            1000,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        flag("no-deblend", "Do not deblend blended sources", "COMPACT-SOURCES", advanced=True),
        float_option(
            "kernel-beams",
            "FWHM of the beam-shaped smoothing kernel applied before detection, in beams (0: no smoothing)",
            0.5,
            0.0,
            3.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        int_option("bkgbox", "Box size in pixels for the background", 64, 8, 1e4, "IMGBKG"),
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
