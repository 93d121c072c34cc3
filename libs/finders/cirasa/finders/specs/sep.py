"""The sep app."""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, flag, float_option, int_option

APP = App(
    name="sep",
    description="Source Extractor as a Python library (sep): background, detection, deblending",
    runner="python",
    module="cirasa.finders.runners.sep",
    options=(
        float_option(
            "seedthr", "Detection threshold in units of the background rms", 5.0, 0.5, 1e4, "COMPACT-SOURCES"
        ),
        int_option("minarea", "Minimum number of pixels above threshold", 5, 1, 1e4, "COMPACT-SOURCES"),
        float_option(
            "deblend-cont",
            "Minimum contrast ratio for deblending",
            0.005,
            0.0,
            1.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        flag(
            "no-clean",
            "Skip the cleaning of spurious detections (faster on crowded maps)",
            "COMPACT-SOURCES",
            advanced=True,
        ),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=0.5, max_memory_gib=2.0, duration_s=1800
    ),
)
