"""The notebook app: a Jupyter notebook run headless (the ExecutionBroker's jupyter-notebook executable)."""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, int_option

APP = App(
    name="notebook",
    description="Runs an uploaded Jupyter notebook headless (nbclient) in the job directory",
    runner="python",
    module="cirasa.finders.runners.notebook",
    untrusted=True,
    options=(int_option("cell-timeout", "Seconds allowed per cell", 600, 1, 86400, "RUN"),),
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=1.0, max_memory_gib=2.0, duration_s=3600
    ),
)
