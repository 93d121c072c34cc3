"""Who is calling: an OIDC bearer token checked against the issuer's keys, or ``anonymous`` with auth off.

A token is a JWT whose signature (the issuer's JWKS), issuer, audience and expiry are all checked. The
user is its ``email`` claim (or another configured claim) mapped as caesar-rest did, ``@`` and ``.``
to ``_``, so existing per-user data keeps its owner. As in caesar-rest the token may come in the
``Authorization: Bearer`` header or an ``access_token`` query parameter (the form field is not read:
it would mean buffering uploads).
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from fastapi import Request

from cirasa.common.paths import safe_user
from cirasa.common.settings import AuthSettings
from cirasa.gateway.errors import Unauthorized

ANONYMOUS = "anonymous"


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        assert settings.jwks_url is not None
        self.settings = settings
        self._keys = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    async def user(self, token: str) -> str:
        try:
            key = await asyncio.to_thread(self._keys.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.settings.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(f"cannot check the token's signature: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(str(exc) or type(exc).__name__) from exc
        name = claims.get(self.settings.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"the token has no {self.settings.username_claim} or sub claim")
        return safe_user(name)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("access_token") or None


async def current_user(request: Request) -> str:
    verifier: TokenVerifier | None = getattr(request.app.state, "auth", None)
    if verifier is None:
        return ANONYMOUS
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("no bearer token")
    return await verifier.user(token)
