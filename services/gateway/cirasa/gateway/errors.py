"""One error hierarchy for the whole gateway: routes and helpers raise, the app's handlers answer.

Each face renders a :class:`GatewayError` in its own form (see ``app.py``): caesar-rest a JSON body
with ``status``, the ExecutionBroker its error document, UWS plain text. :class:`Unauthorized` is the
bearer-token scheme's and is answered the same way on every face.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GatewayError(Exception):
    """``fields`` are extra keys for faces whose error body carries them (caesar-rest repeats the
    keys of the reply it would have given); ``headers`` go on the response on every face."""

    status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields or {})
        self.headers: dict[str, str] = dict(headers or {})


class NotReady(GatewayError):
    """caesar-rest answers a request for the output of a job still under way with 202."""

    status_code = 202


class BadRequest(GatewayError):
    status_code = 400


class Forbidden(GatewayError):
    """A hard limit (a quota that only the user's own action, such as deleting files, frees)."""

    status_code = 403


class Unauthorized(GatewayError):
    """No valid bearer token; the message goes to the client as ``error_description``."""

    status_code = 401


class NotFound(GatewayError):
    status_code = 404


class MethodNotAllowed(GatewayError):
    status_code = 405


class Conflict(GatewayError):
    status_code = 409


class Gone(GatewayError):
    status_code = 410


class PayloadTooLarge(GatewayError):
    status_code = 413


class UnsupportedMediaType(GatewayError):
    status_code = 415


class TooManyRequests(GatewayError):
    """A quota that frees by itself: ``Retry-After`` says when to try again."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InternalError(GatewayError):
    status_code = 500


class Unavailable(GatewayError):
    status_code = 503


class Busy(Unavailable):
    """More submissions wait for the planner than it answers (see ``admission``): ``Retry-After``
    says when to try again; nothing was stored."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Unprocessable(GatewayError):
    status_code = 422
