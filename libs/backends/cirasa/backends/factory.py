"""Which backend runs a platform: the factory, kept apart from the interface its backends import."""

from __future__ import annotations

from collections.abc import Callable

from cirasa.backends.base import Backend, BackendUnavailable
from cirasa.common.settings import PlatformConfig, Settings

BackendFactory = Callable[[PlatformConfig, Settings], Backend]


def _local(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.backends.local import LocalBackend, LocalOptions

    return LocalBackend(LocalOptions.model_validate(platform.options), jobs_dir=settings.jobs_dir)


def _kubernetes(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(platform, settings)


def _slurm(platform: PlatformConfig, settings: Settings) -> Backend:
    from cirasa.backends.slurm import SlurmBackend

    return SlurmBackend.from_platform(platform, settings)


# backend type -> factory; a backend type is offered by the planner only when it is listed here
FACTORIES: dict[str, BackendFactory] = {"local": _local, "kubernetes": _kubernetes, "slurm": _slurm}

# backend types that can run container images (see PlatformConfig.containers)
CONTAINER_BACKENDS: frozenset[str] = frozenset({"kubernetes", "slurm"})


def make_backend(platform: PlatformConfig, settings: Settings) -> Backend:
    factory = FACTORIES.get(platform.backend)
    if factory is None:
        raise BackendUnavailable(f"the {platform.backend} backend is not available in this release")
    return factory(platform, settings)
