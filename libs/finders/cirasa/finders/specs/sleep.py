"""The sleep app."""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, float_option, int_option

APP = App(
    name="sleep",
    description="Diagnostic app: sleeps, then exits with the given code (for tests and benchmarks)",
    runner="python",
    module="cirasa.finders.runners.sleep",
    diagnostic=True,
    options=(
        float_option("seconds", "How long to sleep", 1.0, 0.0, 86400.0, "RUN"),
        int_option("exit-code", "Exit code to finish with", 0, 0, 255, "RUN"),
    ),
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=0.25, max_memory_gib=0.25, duration_s=600
    ),
)
