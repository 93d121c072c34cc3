"""IVOA datasets: an ivo:// identifier or a DataLink URL, resolved through DataLink to the dataset's
own link (semantics ``#this``), which is then downloaded over http(s)."""

from __future__ import annotations

import asyncio
import io
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from astropy.io.votable import parse as parse_votable
from pyvo.dal.adhoc import DatalinkResults

from cirasa.backends.staging import fetch_http
from cirasa.backends.staging.errors import FetchFailed, StagingRefused
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Sink
from cirasa.common.events import DataSource

DATALINK_MAX_BYTES = 16 * 1024 * 1024  # a links table, not data


def datalink_url(source: DataSource, policy: StagingPolicy, label: str) -> str:
    """The DataLink URL to ask: the location itself, or the service of an ivo:// identifier (the
    source's endpoint, else the platform's service for the identifier's longest known prefix)."""
    location = source.location
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        return location
    if scheme != "ivo":
        raise StagingRefused(f"{label}: '{location}' is neither an ivo:// identifier nor a DataLink URL")
    policy.check_url(location)
    service = source.endpoint or policy.datalink_service_for(location)
    if not service:
        raise StagingRefused(
            f"{label}: no DataLink service is known for {location} (give the source an endpoint, "
            "or add its authority to the platform's datalink_services)"
        )
    return f"{service}{'&' if '?' in service else '?'}{urlencode({'ID': location})}"


def _text(value: Any) -> str:
    return "" if value is None or str(value) == "--" else str(value).strip()  # "--": a masked cell


def this_link(body: bytes, url: str, identifier: str | None, label: str) -> str:
    """The access URL of the first ``#this`` row without an error (for ``identifier`` when rows name
    it), or a StagingError saying what the service answered instead."""
    try:
        results = DatalinkResults(parse_votable(io.BytesIO(body), verify="ignore"), url=url)
        rows = [
            (_text(r.id), _text(r.get("access_url", decode=True)), _text(r.error_message))
            for r in results
            if _text(r.semantics) == "#this"
        ]
    except Exception as exc:  # the parser and pyvo raise many kinds: all mean "not a DataLink table"
        first = (str(exc) or type(exc).__name__).splitlines()[0]
        raise FetchFailed(f"{label}: {url} did not answer a DataLink table ({first})") from exc
    if identifier and any(i.lower() == identifier.lower() for i, _, _ in rows):
        rows = [row for row in rows if row[0].lower() == identifier.lower()]
    for _, access_url, error in rows:
        if access_url and not error:
            return urljoin(url, access_url)
    errors = [error for _, _, error in rows if error]
    if errors:
        raise FetchFailed(f"{label}: {url}: the DataLink service answered: {errors[0]}")
    raise FetchFailed(f"{label}: {url}: the DataLink table has no #this link to the dataset")


async def download(source: DataSource, client: httpx.AsyncClient, sink: Sink, policy: StagingPolicy) -> str:
    """Resolve the dataset and stream it into ``sink``; the host the bytes came from."""
    url = datalink_url(source, policy, sink.label)
    body, final_url = await fetch_http.get_small(client, url, policy, sink.label, DATALINK_MAX_BYTES)
    identifier = source.location if source.location.lower().startswith("ivo://") else None
    access_url = await asyncio.to_thread(this_link, body, final_url, identifier, sink.label)
    return await fetch_http.download(client, access_url, sink, policy)
