"""A small client of the caesar-rest compatible API, used by ``cirasa submit/jobs/fetch/demo``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

PREFIX = "/caesar/api/v1.0"
TERMINAL = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        try:
            message = response.json().get("status", response.text)
        except ValueError:
            message = response.text
        super().__init__(f"HTTP {response.status_code}: {message}")
        self.status_code = response.status_code


class CaesarClient:
    def __init__(self, server: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=server.rstrip("/") + PREFIX, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code not in (ok or (200,)):
            raise ApiError(response)
        return response

    def upload(self, path: Path, tag: str = "") -> dict[str, Any]:
        with path.open("rb") as fh:
            r = self.http.post(
                "/upload", files={"file": (path.name, fh, "application/fits")}, data={"tag": tag}
            )
        return self._check(r).json()

    def submit(self, app: str, file_id: str, options: dict[str, Any], tag: str = "") -> dict[str, Any]:
        body = {
            "app": app,
            "job_inputs": options or {"no-preview": False},
            "data_inputs": file_id,
            "tag": tag,
        }
        return self._check(self.http.post("/job", json=body), 202).json()

    def status(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/job/{job_id}/status")).json()

    def jobs(self) -> list[dict[str, Any]]:
        return self._check(self.http.get("/jobs")).json()

    def sources(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/job/{job_id}/sources")).json()

    def fetch(self, job_id: str, dest: Path) -> Path:
        with self.http.stream("GET", f"/job/{job_id}/output") as r:
            if r.status_code != 200:
                r.read()
                raise ApiError(r)
            with dest.open("wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
        return dest

    def wait(
        self,
        job_id: str,
        on_change: Callable[[dict[str, Any]], None],
        timeout_s: float = 3600,
        interval_s: float = 0.5,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: tuple[str, str] | None = None
        while True:
            status = self.status(job_id)
            key = (status["state"], status["status"])
            if key != last:
                on_change(status)
                last = key
            if status["state"] in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout_s:g} s")
            time.sleep(interval_s)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (``5`` → int, ``true`` → bool)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r} is not key=value")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out
