"""A small client of the gateway: its caesar-rest compatible API, its own ``/cirasa/api/v1`` and the
ExecutionBroker's offers. Every failure is a :class:`~cirasa.cli.errors.CliError` (one line for the
user), never an httpx exception."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cirasa.cli import ids
from cirasa.cli.errors import EXIT_FAILED, ApiError, CliError, transport_error

PREFIX = "/caesar/api/v1.0"
CIRASA = "/cirasa/api/v1"
TERMINAL = {"SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT"}

__all__ = ["PREFIX", "TERMINAL", "ApiError", "CaesarClient"]


class _Http(httpx.Client):
    """httpx, with a failed exchange (refused, timed out, cut) turned into the CLI's one-line error."""

    def __init__(self, server: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(self.server, exc) from exc


class CaesarClient:
    def __init__(self, server: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.http: httpx.Client = _Http(self.server, base_url=self.server + PREFIX, timeout=timeout)

    def __enter__(self) -> CaesarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        """An absolute URL on the server, outside the caesar-rest prefix."""
        return self.server + path

    def _check(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code not in (ok or (200,)):
            raise ApiError(response)
        return response

    # --- files and jobs (caesar-rest) ---------------------------------------------------------

    def upload(self, path: Path, tag: str = "") -> dict[str, Any]:
        try:
            with path.open("rb") as fh:
                files = {"file": (path.name, fh, "application/fits")}
                r = self.http.post("/upload", files=files, data={"tag": tag})
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return self._check(r).json()

    def files(self) -> list[dict[str, Any]]:
        return self._check(self.http.get("/fileids")).json()

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

    def job_record(self, job_id: str) -> dict[str, Any]:
        """Everything the server says of one job (platform and timings too); caesar-rest's status
        where the server has no ``/cirasa/api/v1/jobs/{id}`` (or no longer lists the job there)."""
        r = self.http.get(self.url(f"{CIRASA}/jobs/{job_id}"))
        if r.status_code in (404, 405):
            return self.status(job_id)
        return dict(self._check(r).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.post(f"/job/{job_id}/cancel")).json()

    def sources(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/job/{job_id}/sources")).json()

    def fetch(self, job_id: str, dest: Path) -> Path:
        """The job's directory as a tar.gz at ``dest`` (removed again when the download fails)."""
        with self.http.stream("GET", f"/job/{job_id}/output") as r:
            if r.status_code != 200:
                r.read()
                raise ApiError(r)
            try:
                with dest.open("wb") as fh:
                    for chunk in r.iter_bytes():
                        fh.write(chunk)
            except (OSError, httpx.TransportError) as exc:
                dest.unlink(missing_ok=True)
                if isinstance(exc, httpx.TransportError):
                    raise transport_error(self.server, exc) from exc
                raise CliError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        return dest

    def job(self, typed: str) -> dict[str, Any]:
        """The listing's record of the job whose id is or starts with ``typed``."""
        listed = {j["job_id"]: j for j in self.jobs()}
        return listed[ids.resolve(typed, listed)]

    def job_id(self, typed: str) -> str:
        """The whole id of the job ``typed`` names (a whole id is taken as it is, unlisted)."""
        return ids.clean(typed) if ids.is_full_id(typed) else self.job(typed)["job_id"]

    def file_id(self, typed: str) -> str:
        if ids.is_full_id(typed):
            return ids.clean(typed)
        return ids.resolve(typed, (f["fileid"] for f in self.files()), "file", "cirasa files")

    # --- apps and logs --------------------------------------------------------------------------

    def app_names(self) -> list[str]:
        return list(self._check(self.http.get("/apps")).json()["apps"])

    def apps(self) -> list[dict[str, Any]]:
        """Each app with whether it can run here and why not; from caesar-rest's bare list of names
        (runnable unknown) when the server has no ``/cirasa/api/v1/apps``."""
        r = self.http.get(self.url(f"{CIRASA}/apps"))
        if r.status_code in (404, 405):
            names = self.app_names()
            return [{"name": n, "runnable": None, "reason": None, "description": ""} for n in names]
        return list(self._check(r).json()["apps"])

    def describe(self, app: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/app/{app}/describe")).json()

    def log(self, job_id: str, stream: str, tail: int) -> str:
        params: dict[str, Any] = {"stream": stream, "tail": tail}
        return self._check(self.http.get(self.url(f"{CIRASA}/jobs/{job_id}/log"), params=params)).text

    # --- tiled requests ---------------------------------------------------------------------------

    def tiled_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._check(self.http.post(self.url(f"{CIRASA}/tiled"), json=body), 202).json()

    def tiled(self, request_id: str) -> dict[str, Any]:
        return self._check(self.http.get(self.url(f"{CIRASA}/tiled/{request_id}"))).json()

    def tiled_catalogue(self, request_id: str) -> dict[str, Any]:
        return self._check(self.http.get(self.url(f"{CIRASA}/tiled/{request_id}/catalogue"))).json()

    # --- following a job --------------------------------------------------------------------------

    def wait(
        self,
        job_id: str,
        on_change: Callable[[dict[str, Any]], None],
        timeout_s: float = 3600,
        interval_s: float = 0.5,
    ) -> dict[str, Any]:
        """Poll the job's status until it ends, calling ``on_change`` on each new state or status."""
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
                raise CliError(
                    f"job {job_id} still {status['state']} after {timeout_s:g} s; it continues on the server",
                    EXIT_FAILED,
                )
            time.sleep(interval_s)

    # --- the ExecutionBroker ---------------------------------------------------------------------

    def offerset(self, request: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(self.url("/offersets"), json=request)
        return self._check(r, 200, 303).json()

    def decide(self, session_id: str, phase: str) -> dict[str, Any]:
        update = {"kind": "uri:enum-value-update", "path": "phase", "value": phase}
        return self._check(self.http.post(self.url(f"/sessions/{session_id}"), json=update)).json()

    def session(self, session_id: str) -> dict[str, Any]:
        return self._check(self.http.get(self.url(f"/sessions/{session_id}"))).json()
