"""The cutex app."""

from __future__ import annotations

from cirasa.common.apps.registry import App, flag, float_option, int_option

APP = App(
    name="cutex",
    description="CuTEx, caesar-rest's container image",
    runner="container",
    image="sriggi/cutex-job:latest",
    default_args=("--run", "--save-summaryplot", "--save-catalog-to-json"),
    options=(
        float_option("seedthr", "Seed threshold", 5.0, 0, 1e4, "COMPACT-SOURCES"),
        int_option("npixmin", "Minimum number of pixels", 4, 1, 1e4, "COMPACT-SOURCES"),
        float_option("npixpsf", "Number of pixels per PSF", 2.7, 1, 1e4, "COMPACT-SOURCES"),
        float_option(
            "psflimmin",
            "Lower PSF size limit in fit",
            0.5,
            1e-4,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        float_option(
            "psflimmax",
            "Upper PSF size limit in fit",
            2.0,
            1e-4,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        flag("no-logredir", "Do not redirect logs to file", "RUN"),
    ),
)
