"""Slow clients cannot exhaust the gateway (issue 9): 1,000 connections that each send a header line
every few seconds, while ``/readyz`` must keep answering within a second."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from cirasa.common.settings import HttpLimits, Settings
from tests.live import LiveGateway

SLOW = 1000


@pytest.fixture
def few_descriptors() -> Iterator[None]:
    """The server and the attacker share this process: give both room, but not unlimited room."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_slow(host: str, port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")  # ... and the head never ends
        socks.append(s)
    return socks


def trickle(socks: list[socket.socket]) -> int:
    """One more header line on each; how many were still open."""
    alive = 0
    for s in socks:
        with contextlib.suppress(OSError):
            s.sendall(b"X-Slow: 1\r\n")
            alive += 1
    return alive


def test_slow_clients_do_not_starve_readyz(settings: Settings, few_descriptors: None) -> None:
    settings.http_limits = HttpLimits(header_timeout_s=3, waiting_per_client=64, waiting_total=256)
    gateway = LiveGateway(settings)
    gateway.start()
    url = urlparse(gateway.url)
    assert url.hostname and url.port
    socks: list[socket.socket] = []
    try:
        socks = open_slow(url.hostname, url.port, SLOW)
        worst = 0.0
        with httpx.Client(base_url=gateway.url, timeout=5) as client:
            for _ in range(8):  # about 6 s: past the header deadline of the first wave
                t0 = time.monotonic()
                r = client.get("/readyz", headers={"connection": "close"})
                worst = max(worst, time.monotonic() - t0)
                assert r.status_code == 200, r.text
                trickle(socks)
                time.sleep(0.75)
        assert worst < 1.0, f"/readyz took {worst:.2f} s with {SLOW} slow clients"
        # the server let go of them: none holds a connection past the header deadline
        assert trickle(socks) + trickle(socks) < SLOW
    finally:
        for s in socks:
            s.close()
        gateway.stop()


def test_a_request_head_must_arrive_in_time(settings: Settings) -> None:
    settings.http_limits = HttpLimits(header_timeout_s=1)
    gateway = LiveGateway(settings)
    gateway.start()
    url = urlparse(gateway.url)
    assert url.hostname and url.port
    try:
        (s,) = open_slow(url.hostname, url.port, 1)
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(1024) == b""  # closed by the server, not answered
        assert 0.5 < time.monotonic() - t0 < 4
        s.close()
        r = httpx.get(f"{gateway.url}/healthz", timeout=5)  # a prompt client is served as ever
        assert r.status_code == 200
    finally:
        gateway.stop()
