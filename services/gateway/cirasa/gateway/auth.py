"""Who is calling: an OIDC bearer token checked against the issuer's keys, or ``anonymous`` with auth off.

A token is a JWT whose signature (the issuer's JWKS), issuer, audience and expiry are all checked. The
user is an injective key of the token (:func:`user_key`): two people never share one, so they never
share files or jobs. As in caesar-rest the token may come in the ``Authorization: Bearer`` header or
an ``access_token`` query parameter (the form field is not read: it would mean buffering uploads).
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from fastapi import Request

from cirasa.common.settings import AuthSettings
from cirasa.gateway.errors import Unauthorized

ANONYMOUS = "anonymous"
MAX_USER_KEY = 512


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
        return user_key(claims, self.settings.username_claim)


def user_key(claims: dict[str, Any], username_claim: str = "email") -> str:
    """Who the token speaks for, as a key no other person's token can have.

    * ``email`` (the default, caesar-rest's): the email, but only when ``email_verified`` is true;
    * another claim the operator names (it must be unique and never reassigned at the issuer);
    * otherwise ``<issuer>#<sub>``: ``sub`` is unique per issuer, and a ``:`` in the issuer keeps this
      form apart from every email address.
    """
    if username_claim == "email":
        email = claims.get("email")
        if isinstance(email, str) and email and claims.get("email_verified") is True:
            return _bounded(email)
    elif username_claim != "sub":
        value = claims.get(username_claim)
        if isinstance(value, str) and value:
            return _bounded(value)
    sub, issuer = claims.get("sub"), claims.get("iss")
    if not isinstance(sub, str) or not sub or not isinstance(issuer, str):
        raise Unauthorized(f"the token has no verified {username_claim} and no sub claim")
    return _bounded(f"{issuer}#{sub}")


def _bounded(key: str) -> str:
    if len(key) > MAX_USER_KEY or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise Unauthorized("the token's user name is too long or has control characters")
    return key


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
