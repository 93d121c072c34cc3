"""The aegean app."""

from __future__ import annotations

from cirasa.common.apps.registry import App, flag, float_option, int_option

APP = App(
    name="aegean",
    description="Aegean (BANE then aegean), caesar-rest's container image",
    runner="container",
    image="sriggi/aegean-job:latest",
    default_args=("--run", "--save-summaryplot", "--save-regions", "--save-catalog-to-json"),
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
    ),
)
