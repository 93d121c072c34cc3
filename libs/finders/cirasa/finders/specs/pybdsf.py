"""The pybdsf app, run by ``cirasa.finders.runners.pybdsf``."""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, flag, float_option, int_option
from cirasa.finders.specs.aegean import beam_options

APP = App(
    name="pybdsf",
    description="PyBDSF (bdsf): islands decomposed into Gaussians, grouped into sources",
    runner="python",
    module="cirasa.finders.runners.pybdsf",
    options=(
        float_option("thresh-isl", "Island boundary threshold in sigmas", 3.0, 0.5, 1e4, "COMPACT-SOURCES"),
        float_option(
            "thresh-pix", "Source detection (peak) threshold in sigmas", 5.0, 0.5, 1e4, "COMPACT-SOURCES"
        ),
        int_option(
            "rms-box",
            "Box size in pixels for the background and rms maps (0: PyBDSF chooses)",
            0,
            0,
            1e4,
            "IMGBKG",
            advanced=True,
        ),
        int_option(
            "rms-step",
            "Step in pixels between rms boxes, with rms-box (0: a third of the box)",
            0,
            0,
            1e4,
            "IMGBKG",
            advanced=True,
        ),
        flag(
            "group-by-isl",
            "Group all Gaussians of an island into one source",
            "COMPACT-SOURCES",
            advanced=True,
        ),
        float_option(
            "frequency",
            "Frequency in Hz, for images without FREQ, RESTFRQ or a spectral axis (0: from the header)",
            0.0,
            0.0,
            1e13,
            "INPUT",
            advanced=True,
        ),
        *beam_options(),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    # Fitting runs in as many processes as the job has cores; one core fits ~30 sources/s.
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=1.0, max_memory_gib=4.0, duration_s=3600
    ),
)
