"""`helm test`: upload a tiny FITS image through the gateway, run one job on it, wait for SUCCESS.

Runs in the service image with the standard library only (templates/tests/smoke-test.yaml). Exits 0
when the job reaches SUCCESS, and 1 with a line saying what went wrong otherwise. Environment:

  CIRASA_TEST_URL        the gateway, e.g. http://cirasa-gateway:8000
  CIRASA_TEST_APP        the app to run (sleep)
  CIRASA_TEST_JOB_INPUTS its options, as JSON ({"seconds": 1})
  CIRASA_TEST_TIMEOUT_S  how long the whole test may take
  CIRASA_TEST_TOKEN      a bearer token, when the gateway wants one (OIDC)
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

API = "/caesar/api/v1.0"
TERMINAL = ("SUCCESS", "FAILURE", "ABORTED", "CANCELED", "TIMED-OUT")


class Failed(Exception):
    """The test failed; the message says why."""


def fits_image() -> bytes:
    """An 8x8 8-bit FITS image: one header block, one data block."""
    cards = [
        f"{'SIMPLE':<8}= {'T':>20}",
        f"{'BITPIX':<8}= {8:>20}",
        f"{'NAXIS':<8}= {2:>20}",
        f"{'NAXIS1':<8}= {8:>20}",
        f"{'NAXIS2':<8}= {8:>20}",
        "END",
    ]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii")
    data = bytes(range(64)).ljust(2880, b"\0")
    return header + data


class Gateway:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Any:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            raise Failed(f"{method} {path} answered HTTP {exc.code}: {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failed(f"cannot reach the gateway at {self.url}: {reason}") from None

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                self.call("GET", "/readyz")
                return
            except Failed as exc:
                if time.monotonic() > deadline:
                    raise Failed(f"the gateway never became ready: {exc}") from None
            time.sleep(2)

    def upload(self, name: str, content: bytes) -> str:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/fits\r\n\r\n"
        ).encode() + content
        body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="tag"\r\n\r\nhelm-test'.encode()
        body += f"\r\n--{boundary}--\r\n".encode()
        reply = self.call("POST", f"{API}/upload", body, f"multipart/form-data; boundary={boundary}")
        file_id = reply.get("uuid") if isinstance(reply, dict) else None
        if not file_id:
            raise Failed(f"the upload returned no file id: {reply}")
        return str(file_id)

    def submit(self, app: str, file_id: str, inputs: dict[str, Any]) -> str:
        request = {"app": app, "data_inputs": file_id, "job_inputs": inputs, "tag": "helm-test"}
        reply = self.call("POST", f"{API}/job", json.dumps(request).encode(), "application/json")
        job_id = reply.get("job_id") if isinstance(reply, dict) else None
        if not job_id:
            raise Failed(f"the job was not accepted: {reply}")
        return str(job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        reply = self.call("GET", f"{API}/job/{job_id}/status")
        if not isinstance(reply, dict):
            raise Failed(f"the job's status is not an object: {reply}")
        return reply


def run(env: dict[str, str]) -> str:
    """The whole test; returns what passed, raises Failed with what did not."""
    started = time.monotonic()
    deadline = started + float(env.get("CIRASA_TEST_TIMEOUT_S", "300"))
    app = env.get("CIRASA_TEST_APP", "sleep")
    inputs = json.loads(env.get("CIRASA_TEST_JOB_INPUTS", "{}"))
    gateway = Gateway(env["CIRASA_TEST_URL"], env.get("CIRASA_TEST_TOKEN", ""))
    gateway.wait_ready(deadline)
    file_id = gateway.upload("helm-test.fits", fits_image())
    job_id = gateway.submit(app, file_id, inputs)
    print(f"submitted job {job_id} ({app} on file {file_id})", flush=True)
    state, seen = "", ""
    while time.monotonic() < deadline:
        status = gateway.status(job_id)
        state = str(status.get("state", ""))
        if state != seen:
            print(f"job {job_id}: {state} {status.get('status', '')}".rstrip(), flush=True)
            seen = state
        if state == "SUCCESS":
            return f"job {job_id} ({app}) reached SUCCESS in {time.monotonic() - started:.0f} s"
        if state in TERMINAL:
            raise Failed(f"job {job_id} ({app}) ended {state}: {status.get('status', '')}")
        time.sleep(1)
    raise Failed(
        f"job {job_id} ({app}) was still {state or 'unknown'} after {deadline - started:.0f} s: "
        "does a platform offer this app, and are the planner, the scheduler and the monitor running?"
    )


def main() -> int:
    try:
        print(f"helm test passed: {run(dict(os.environ))}", flush=True)
    except Failed as exc:
        print(f"helm test FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
