"""Can a platform run an app at all (whatever it is asked for)? One answer for the planner's offers and
the gateway's list of apps, so the page never offers what the planner would refuse."""

from __future__ import annotations

from cirasa.backends.factory import CONTAINER_BACKENDS, FACTORIES
from cirasa.backends.sandbox import sandbox_available
from cirasa.common.settings import PlatformConfig
from cirasa.finders.registry import App


def app_unfit(app: App, platform: PlatformConfig) -> str | None:
    """Why ``platform`` cannot run ``app``, in words a person can act on (None: it can)."""
    name = platform.name
    if platform.backend not in FACTORIES:
        return f"{name}: the {platform.backend} backend is not available in this release"
    if platform.apps is not None and app.name not in platform.apps:
        return f"{name}: does not offer app {app.name!r} (it offers {', '.join(platform.apps) or 'none'})"
    if app.untrusted and platform.backend == "local" and (why := local_sandbox_missing(platform)):
        return f"{name}: app {app.name!r} runs user-supplied code, which needs a sandbox, and {why}"
    if app.runnable_without_container:
        return None
    if platform.backend not in CONTAINER_BACKENDS:
        return (
            f"{name}: app {app.name!r} needs its container image {app.image}, "
            f"and a {platform.backend} platform runs only Python apps"
        )
    if app.name not in platform.containers:
        return f"{name}: no container image for app {app.name!r} is declared on this platform"
    return None


def local_sandbox_missing(platform: PlatformConfig) -> str | None:
    """Why a local platform cannot sandbox a job (None: it can). The planner of a local platform runs
    on its host, so it can look."""
    if platform.options.get("sandbox", True) is False:
        return "the platform's sandbox is switched off (options.sandbox)"
    return sandbox_available()
