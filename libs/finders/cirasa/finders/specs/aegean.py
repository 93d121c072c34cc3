"""The aegean app: caesar-rest's option schema, run here by ``cirasa.finders.runners.aegean``."""

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
            3,
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
