"""Who is calling. This release serves everyone as ``anonymous`` (caesar-rest's behaviour with AAI off);
OIDC bearer tokens are the next step and will plug in here."""

from __future__ import annotations

ANONYMOUS = "anonymous"


async def current_user() -> str:
    return ANONYMOUS
