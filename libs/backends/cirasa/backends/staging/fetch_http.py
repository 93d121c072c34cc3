"""http(s) transfers with httpx: streamed, redirects followed by hand so that the policy sees every
hop before it is contacted, the announced size refused before reading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import httpx

from cirasa.backends.staging.errors import FetchFailed
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Sink

MAX_REDIRECTS = 10
# Bytes as stored at the origin: a checksum is of the file, not of a compressed transfer of it.
HEADERS = {"Accept-Encoding": "identity", "User-Agent": "cirasa-staging"}


def client_for(policy: StagingPolicy) -> httpx.AsyncClient:
    timeout = httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers=HEADERS)


def _reason(exc: httpx.HTTPError, policy: StagingPolicy) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {policy.connect_timeout_s:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the transfer broke off ({exc})"
    return str(exc) or type(exc).__name__


@asynccontextmanager
async def open_url(
    client: httpx.AsyncClient, url: str, policy: StagingPolicy, label: str
) -> AsyncIterator[httpx.Response]:
    """The streamed 2xx response to GET ``url``, after the redirects the policy allows; its URL is
    where the bytes come from. Any failure is a StagingError naming the URL that failed."""
    for _ in range(MAX_REDIRECTS + 1):
        policy.check_url(url)
        try:
            response = await client.send(client.build_request("GET", url), stream=True)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{label}: {url}: {_reason(exc, policy)}") from exc
        try:
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                continue
            if not response.is_success:
                raise FetchFailed(f"{label}: {url} answered {response.status_code} {response.reason_phrase}")
            try:
                yield response
            except httpx.HTTPError as exc:
                raise FetchFailed(f"{label}: {url}: {_reason(exc, policy)}") from exc
            return
        finally:
            await response.aclose()
    raise FetchFailed(f"{label}: {url}: more than {MAX_REDIRECTS} redirects")


def _announced(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def download(client: httpx.AsyncClient, url: str, sink: Sink, policy: StagingPolicy) -> str:
    """Stream ``url`` into ``sink``; the host the bytes came from."""
    async with open_url(client, url, policy, sink.label) as response:
        sink.origin = str(response.url)
        announced = _announced(response)
        sink.refuse_announced(announced)
        async for chunk in response.aiter_bytes():
            await sink.write(chunk)
        if announced is not None and response.num_bytes_downloaded < announced:  # bytes as sent
            raise FetchFailed(
                f"{sink.label}: {sink.origin}: the transfer broke off after "
                f"{response.num_bytes_downloaded} of {announced} bytes"
            )
        return urlsplit(str(response.url)).hostname or ""


async def get_small(
    client: httpx.AsyncClient, url: str, policy: StagingPolicy, label: str, limit: int
) -> tuple[bytes, str]:
    """A small document (a DataLink table) in memory, refused past ``limit``; and its final URL."""
    async with open_url(client, url, policy, label) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise FetchFailed(f"{label}: {url} answered more than {limit} bytes: not a DataLink table")
        return bytes(body), str(response.url)
