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

from cirasa.common.paths import safe_user
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
        "email_verified": True,
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
    assert (secured.settings.data_dir / safe_user("alice.smith@inaf.it")).is_dir()


def claims_token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, KEY, algorithm="RS256", headers={"kid": "k1"})


COLLIDING = {  # issue 9: caesar-rest's mapping made all of these one user
    "verified": claims_token(sub="u1", email="alice@example.org", email_verified=True),
    "dot-swapped": claims_token(sub="u2", email="alice.example@org", email_verified=True),
    "underscored": claims_token(sub="u3", email="alice_example_org", email_verified=True),
    "sub-only": claims_token(sub="alice@example.org"),
    "unverified": claims_token(sub="u5", email="alice@example.org", email_verified=False),
    "long": claims_token(sub="x" * 300, email="x" * 300, email_verified=True),
    "long-sibling": claims_token(sub="y", email="x" * 299 + "y", email_verified=True),
}


async def test_users_whose_names_look_alike_stay_apart(secured: Stack, fits_image: Path) -> None:
    uploaded: dict[str, str] = {}
    for who, tok in COLLIDING.items():
        up = await secured.client.post(
            f"{API}/upload", headers=bearer(tok), files={"file": (f"{who}.fits", fits_image.read_bytes())}
        )
        assert up.status_code == 200, (who, up.text)
        uploaded[who] = up.json()["uuid"]
    for who, tok in COLLIDING.items():
        seen = [f["fileid"] for f in (await secured.client.get(f"{API}/fileids", headers=bearer(tok))).json()]
        assert seen == [uploaded[who]], who
    user_dirs = [p for p in secured.settings.data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len({p.name for p in user_dirs}) >= len(COLLIDING)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "s" * 600},  # names are refused, never cut to collide
        {"email": "a@b.org", "email_verified": False},  # no sub to fall back on
        {"sub": "a\nb"},
    ],
)
async def test_tokens_without_a_usable_identity_are_refused(secured: Stack, claims: dict[str, Any]) -> None:
    r = await secured.client.get(f"{API}/fileids", headers=bearer(claims_token(**claims)))
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/metrics", f"{API}/appstats"])
async def test_operator_pages_follow_the_auth_setting(secured: Stack, path: str) -> None:
    assert (await secured.client.get(path)).status_code == 401
    r = await secured.client.get(path, headers=bearer(token("ops@inaf.it")))
    assert r.status_code in (200, 404)  # 404: no usage recorded yet
