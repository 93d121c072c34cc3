"""The slurmrestd client: one request with the current token, repeated once after a token renewal."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from cirasa.backends.slurm.errors import SlurmAuthError, SlurmError
from cirasa.backends.slurm.options import SlurmOptions
from cirasa.backends.slurm.tokens import TokenSource

ERR_INVALID_JOB_ID = 2017
"""Slurm's ESLURM_INVALID_JOB_ID: the job is unknown (never existed, or purged after MinJobAge)."""


def error_text(errors: Sequence[Any]) -> str:
    """Slurm's error objects carry ``error_code`` or ``error_number``, ``error`` and ``description``."""
    parts = []
    for err in errors:
        if not isinstance(err, Mapping):
            parts.append(str(err))
            continue
        code = err.get("error_code", err.get("error_number"))
        text = "; ".join(str(err[k]) for k in ("error", "description") if err.get(k))
        parts.append(f"{text or 'error'}" + (f" (error {code})" if code not in (None, 0) else ""))
    return ", ".join(parts)


def error_codes(errors: Sequence[Any]) -> set[int]:
    codes = set()
    for err in errors:
        if isinstance(err, Mapping):
            code = err.get("error_code", err.get("error_number"))
            if isinstance(code, int):
                codes.add(code)
    return codes


@dataclass(frozen=True)
class SlurmReply:
    status_code: int
    body: dict[str, Any]

    @property
    def errors(self) -> list[Any]:
        errors = self.body.get("errors")
        return errors if isinstance(errors, list) else []


def _is_auth_failure(response: httpx.Response, body: Mapping[str, Any]) -> bool:
    """401, or the 500 slurmrestd 22.05 answers a bad/expired token with ("slurmctld config is unable
    to load", from slurm_load_ctl_conf)."""
    if response.status_code == 401:
        return True
    if response.status_code != 500:
        return False
    errors = body.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, Mapping) and e.get("source") == "slurm_load_ctl_conf" for e in errors
    )


class SlurmClient:
    """slurmrestd's REST API (``/slurm/<api_version>/...``) as the configured user."""

    def __init__(
        self,
        options: SlurmOptions,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._tokens = TokenSource(options, clock)
        self._prefix = f"/slurm/{options.api_version}"
        self._client = httpx.Client(
            base_url=options.url.rstrip("/"),
            timeout=options.request_timeout_s,
            verify=options.verify_tls,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> SlurmReply:
        """One call to slurmrestd; repeated once with a renewed token when the token was rejected."""
        for attempt in range(2):
            token = self._tokens.get()
            headers = {"X-SLURM-USER-NAME": self.options.user, "X-SLURM-USER-TOKEN": token}
            try:
                response = self._client.request(method, self._prefix + path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise SlurmError(
                    f"slurmrestd at {self.options.url} did not answer {method} {path}: {exc!r}"
                ) from exc
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            data: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
            if _is_auth_failure(response, data):
                if attempt == 0 and self._tokens.invalidate(token):
                    continue
                detail = error_text(data.get("errors") or []) or response.text[:200]
                raise SlurmAuthError(
                    f"slurmrestd rejected the token of user {self.options.user} "
                    f"(HTTP {response.status_code}: {detail})"
                )
            if not isinstance(parsed, dict):
                raise SlurmError(
                    f"slurmrestd {method} {path}: HTTP {response.status_code}, "
                    f"not a JSON object: {response.text[:200]!r}"
                )
            return SlurmReply(response.status_code, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def checked(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> SlurmReply:
        """A call that must succeed: HTTP 2xx **and** an empty ``errors`` list."""
        reply = self.request(method, path, body)
        if reply.status_code >= 300 or reply.errors:
            raise SlurmError(
                f"slurmrestd {method} {path}: HTTP {reply.status_code}: "
                f"{error_text(reply.errors) or 'no error given'}"
            )
        return reply

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job slurmctld holds (one ``GET /jobs``)."""
        jobs = self.checked("GET", "/jobs").body.get("jobs")
        if not isinstance(jobs, list):
            raise SlurmError("slurmrestd GET /jobs: the answer has no jobs list")
        return [j for j in jobs if isinstance(j, dict)]

    def list_nodes(self) -> list[Any]:
        """Every node slurmctld holds (one ``GET /nodes``)."""
        nodes = self.checked("GET", "/nodes").body.get("nodes")
        if not isinstance(nodes, list):
            raise SlurmError("slurmrestd GET /nodes: the answer has no nodes list")
        return nodes

    def delete(self, slurm_id: int) -> None:
        """``DELETE /job/{id}``; a job Slurm no longer knows is already gone, which is fine."""
        reply = self.request("DELETE", f"/job/{slurm_id}")
        if reply.status_code < 300 and not reply.errors:
            return
        if ERR_INVALID_JOB_ID in error_codes(reply.errors):
            return
        raise SlurmError(
            f"slurmrestd DELETE /job/{slurm_id}: HTTP {reply.status_code}: {error_text(reply.errors)}"
        )
