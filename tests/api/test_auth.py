"""OIDC bearer tokens: signature, issuer, audience and expiry checked; users see only their own data."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cirasa.common.settings import AuthSettings, GatewaySettings, Settings
from tests.conftest import API, Stack, start_stack, stop_stack

ISSUER, AUDIENCE = "https://idp.test/realms/cirasa", "cirasa-gateway"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()


def token(email: str, key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": email,
        "email": email,
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


def bearer(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


@pytest.fixture
async def secured(settings: Settings, jwks_url: str) -> AsyncIterator[Stack]:
    settings.gateway = GatewaySettings(
        auth=AuthSettings(enabled=True, issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)
    )
    stack = await start_stack(settings, memory=True)
    yield stack
    await stop_stack(stack)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no bearer token"),
        (bearer("not-a-jwt"), ""),
        (bearer(token("a@x.it", key=OTHER_KEY)), "Signature"),
        (bearer(token("a@x.it", exp=int(time.time()) - 120)), "expired"),
        (bearer(token("a@x.it", aud="someone-else")), "audience"),
        (bearer(token("a@x.it", iss="https://evil.test")), "issuer"),
    ],
)
async def test_bad_tokens_are_refused(secured: Stack, headers: dict[str, str], reason: str) -> None:
    r = await secured.client.get(f"{API}/fileids", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"] == "invalid_token" and reason.lower() in r.json()["error_description"].lower()


async def test_users_see_only_their_own_files_and_jobs(secured: Stack, fits_image: Path) -> None:
    alice, bob = bearer(token("alice.smith@inaf.it")), bearer(token("bob@inaf.it"))
    up = await secured.client.post(
        f"{API}/upload", headers=alice, files={"file": ("sky.fits", fits_image.read_bytes())}
    )
    assert up.status_code == 200
    file_id = up.json()["uuid"]
    job = await secured.client.post(
        f"{API}/job",
        headers=alice,
        json={"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 0.1}},
    )
    assert job.status_code == 202
    job_id = job.json()["job_id"]
    assert [f["fileid"] for f in (await secured.client.get(f"{API}/fileids", headers=alice)).json()] == [
        file_id
    ]
    assert (await secured.client.get(f"{API}/fileids", headers=bob)).json() == []
    assert (await secured.client.get(f"{API}/download/{file_id}", headers=bob)).status_code == 404
    assert (await secured.client.get(f"{API}/job/{job_id}/status", headers=bob)).status_code == 404
    cross = await secured.client.post(
        f"{API}/job",
        headers=bob,
        json={"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 0.1}},
    )
    assert cross.status_code == 400  # bob cannot run a job on alice's file
    status = (
        await secured.client.get(
            f"{API}/job/{job_id}/status", params={"access_token": token("alice.smith@inaf.it")}
        )
    ).json()
    assert status["job_id"] == job_id
    assert (secured.settings.data_dir / "alice_smith_inaf_it").is_dir()  # caesar-rest's user mapping
