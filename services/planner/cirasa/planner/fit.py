"""Can a platform ever run a task? The answer, when it is no, says why in words a person can act on."""

from __future__ import annotations

from dataclasses import dataclass

from cirasa.backends.app_fit import app_unfit
from cirasa.backends.factory import CONTAINER_BACKENDS
from cirasa.common.events import ResourceRequest, Resources, TaskProposed
from cirasa.common.settings import PlatformConfig
from cirasa.finders.registry import get_app

CONTAINER_KINDS = ("docker-container", "singularity-container")


@dataclass(frozen=True)
class Fit:
    platform: PlatformConfig
    reasons: list[str]

    @property
    def ok(self) -> bool:
        return not self.reasons


def static_fit(task: TaskProposed, platform: PlatformConfig) -> Fit:
    reasons: list[str] = []
    name = platform.name
    app = get_app(task.app)
    req = task.resources
    if task.executable_kind in CONTAINER_KINDS:
        if platform.backend not in CONTAINER_BACKENDS:
            reasons.append(f"{name}: a {platform.backend} platform runs no {task.executable_kind}")
        elif not platform.options.get("run_images", False):
            reasons.append(f"{name}: does not run arbitrary container images (options.run_images is off)")
    elif app is None:
        reasons.append(f"{name}: unknown app {task.app!r}")
    elif why := app_unfit(app, platform):
        reasons.append(why)
    if req.min_cores > platform.cores:
        reasons.append(f"{name}: needs {req.min_cores} cores; the platform has {platform.cores}")
    if req.min_memory_gib > platform.memory_gib:
        reasons.append(
            f"{name}: needs {req.min_memory_gib:g} GiB of memory; the platform has "
            f"{platform.memory_gib:g} GiB"
        )
    if req.duration_s > platform.max_duration_s:
        reasons.append(
            f"{name}: needs {req.duration_s} s of wall time; the platform allows at most "
            f"{platform.max_duration_s} s"
        )
    return Fit(platform, reasons)


def no_reasons_summary(task: TaskProposed, fits: list[Fit]) -> str:
    if not fits:
        return "No platform is configured"
    largest = max(fits, key=lambda f: f.platform.cores).platform
    head = f"No platform can run this job ({len(fits)} checked"
    if task.resources.min_cores > largest.cores:
        head += f"; needs {task.resources.min_cores} cores, largest platform has {largest.cores}"
    return head + "): " + "; ".join(r for f in fits for r in f.reasons)


def choose_resources(req: ResourceRequest, free_cores: int, free_memory_mib: int) -> Resources | None:
    """As many cores and as much memory as the request allows and the platform has free now."""
    cores = min(req.max_cores, free_cores)
    memory_mib = min(round(req.max_memory_gib * 1024), free_memory_mib)
    if cores < req.min_cores or memory_mib < round(req.min_memory_gib * 1024):
        return None
    return Resources(cores=cores, memory_gib=memory_mib / 1024, duration_s=req.duration_s)
