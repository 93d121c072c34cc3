"""The cutex app: CuTEx in caesar-rest's container image, with caesar-rest's option schema.

Six options (research/caesar-rest.md §4.4), none advanced, in caesar-rest's declaration order. The
container receives ``--run --save-summaryplot --save-catalog-to-json`` (no ``--save-regions``), the
options given, then ``--inputfile=<path>``.
"""

from __future__ import annotations

from cirasa.finders.registry import App, flag, float_option, int_option

COMPACT = "COMPACT-SOURCES"

APP = App(
    name="cutex",
    description="CuTEx (curvature thresholding extractor), caesar-rest's container image",
    runner="container",
    image="sriggi/cutex-job:latest",
    default_args=("--run", "--save-summaryplot", "--save-catalog-to-json"),
    input_flag="--inputfile",
    options=(
        float_option("seedthr", "Detection threshold, in noise sigmas", 5.0, 0, 10000, COMPACT),
        int_option("npixmin", "Minimum number of pixels of a significant cluster", 4, 1, 10000, COMPACT),
        float_option("npixpsf", "Number of pixels sampling the instrumental PSF", 2.7, 1, 10000, COMPACT),
        float_option(
            "psflimmin",
            "Lower bound of the fitted source size, as a fraction of the initial size estimate",
            0.5,
            0.0001,
            100,
            COMPACT,
            subcategory="FITTING",
        ),
        float_option(
            "psflimmax",
            "Upper bound of the fitted source size, as a fraction of the initial size estimate",
            2.0,
            0.0001,
            100,
            COMPACT,
            subcategory="FITTING",
        ),
        flag("no-logredir", "Do not redirect the logs to a file", "RUN"),
    ),
)
