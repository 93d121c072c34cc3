"""One resource fetched from its origin into a file: the scheme's fetcher, the platform's time and
size limits, hashing and progress on the way. Nothing here knows about the cache."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from cirasa.backends.staging import fetch_http
from cirasa.backends.staging.checksums import parse_checksum
from cirasa.backends.staging.errors import FetchFailed, StagingError, StagingRefused
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Progress, Sink
from cirasa.common.events import DataSource


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str  # hex
    host: str  # where the bytes came from (after redirects and DataLink resolution)
    digests: dict[str, str] = field(default_factory=dict)  # by algorithm: sha256 and the checksum's


def label_of(source: DataSource) -> str:
    """How messages name a resource: ``data 'sky'``, ``executable 'run.sh'``."""
    return f"{source.role} '{source.name}'"


def _open(dest: Path) -> BinaryIO:
    return dest.open("wb")


async def _dispatch(source: DataSource, sink: Sink, policy: StagingPolicy) -> str:
    if source.scheme == "s3":
        from cirasa.backends.staging import fetch_s3  # boto3 takes a while to import: only when used

        return await fetch_s3.download(source.location, source.endpoint, sink, policy)
    async with fetch_http.client_for(policy) as client:
        if source.scheme == "ivoa":
            from cirasa.backends.staging import fetch_ivoa  # so do astropy's VOTable and pyvo

            return await fetch_ivoa.download(source, client, sink, policy)
        if urlsplit(source.location).scheme.lower() not in ("http", "https"):
            raise StagingRefused(f"{sink.label}: '{source.location}' is not an http(s) URL")
        return await fetch_http.download(client, source.location, sink, policy)


async def fetch(
    source: DataSource, dest: Path, policy: StagingPolicy, progress: Progress | None = None
) -> Fetched:
    """Fetch ``source`` into ``dest`` (created or truncated; the caller removes it on failure) within
    the policy's time and size limits. Raises StagingError, one line naming the resource."""
    label = label_of(source)
    expected = parse_checksum(source.checksum, label)
    try:
        async with asyncio.timeout(policy.timeout_s):
            fh = _open(dest)
            try:
                sink = Sink(
                    fh,
                    label=label,
                    limit=policy.max_resource_bytes,
                    progress=progress,
                    algorithms=(expected[0],) if expected else (),
                )
                host = await _dispatch(source, sink, policy)
                await sink.close()
            finally:
                fh.close()
    except TimeoutError:
        raise FetchFailed(
            f"{label}: {source.location}: not fetched within {policy.timeout_s:g} s (the platform's limit)"
        ) from None
    except StagingError as exc:
        if str(exc).startswith(f"{label}: "):
            raise
        raise type(exc)(f"{label}: {exc}") from exc  # the policy's refusals do not know the resource
    except OSError as exc:
        raise StagingError(f"{label}: cannot write it to the cache: {exc.strerror or exc}") from exc
    digests = sink.digests()
    return Fetched(size=sink.size, sha256=digests["sha256"], host=host, digests=digests)
