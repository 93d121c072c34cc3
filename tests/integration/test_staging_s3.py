"""Staging from S3 against moto's S3 server (real HTTP on 127.0.0.1): the object's bytes into the
cache, a hit the second time, and clear errors for what is not there or not allowed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from cirasa.backends.staging import ContentCache, FetchFailed, StagingPolicy, StagingRefused
from cirasa.common.events import DataSource
from tests.s3_server import ACCESS, SECRET


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    return ContentCache(tmp_path / "cache", max_bytes=10**8, platform="test-s3")


POLICY = StagingPolicy(allowed_hosts=["127.0.0.1"], s3_access_key=ACCESS, s3_secret_key=SECRET, timeout_s=20)


def s3(location: str, endpoint: str, checksum: str | None = None) -> DataSource:
    return DataSource(name="cube", scheme="s3", location=location, endpoint=endpoint, checksum=checksum)


async def test_an_object_is_staged_then_hit(bucket: Any, s3_url: str, cache: ContentCache) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    bucket.put_object(Key="fields/a b/cube.fits", Body=data)
    source = s3(f"s3://{bucket.name}/fields/a b/cube.fits", s3_url, f"md5:{hashlib.md5(data).hexdigest()}")
    seen: list[tuple[int, int | None]] = []

    first = await cache.stage(source, POLICY, progress=lambda done, total: seen.append((done, total)))
    second = await cache.stage(source, POLICY)

    assert first.path.read_bytes() == data
    assert first.digest == hashlib.sha256(data).hexdigest() == second.digest
    assert (first.hit, second.hit) == (False, True)
    assert first.host == "127.0.0.1" and first.size_bytes == len(data)
    assert seen[-1] == (len(data), len(data))


async def test_a_missing_key_names_the_bucket_and_the_key(
    bucket: Any, s3_url: str, cache: ContentCache
) -> None:
    with pytest.raises(FetchFailed) as caught:
        await cache.stage(s3(f"s3://{bucket.name}/no/such.fits", s3_url), POLICY)
    message = str(caught.value)
    assert message.startswith("data 'cube': ")
    assert f"bucket '{bucket.name}' has no key 'no/such.fits'" in message


async def test_a_missing_bucket_is_said_so(s3_url: str, cache: ContentCache) -> None:
    with pytest.raises(FetchFailed, match="there is no bucket 'nobody-made-this'"):
        await cache.stage(s3("s3://nobody-made-this/x.fits", s3_url), POLICY)


async def test_the_endpoint_is_checked_by_the_policy(bucket: Any, s3_url: str, cache: ContentCache) -> None:
    bucket.put_object(Key="x", Body=b"x")
    policy = POLICY.model_copy(update={"allowed_hosts": ["s3.example.org"]})
    with pytest.raises(StagingRefused, match=r"host '127\.0\.0\.1' is not allowed"):
        await cache.stage(s3(f"s3://{bucket.name}/x", s3_url), policy)
    with pytest.raises(StagingRefused, match="not an S3 location"):
        await cache.stage(s3(f"s3://{bucket.name}", s3_url), POLICY)


async def test_every_request_boto3_sends_is_checked(cache: ContentCache) -> None:
    """Without an endpoint boto3 goes to AWS: the policy sees that URL before anything is sent."""
    policy = POLICY.model_copy(update={"allowed_hosts": ["127.0.0.1"]})
    with pytest.raises(
        StagingRefused, match=r"s3\.amazonaws\.com.*host '[^']*amazonaws\.com' is not allowed"
    ):
        await cache.stage(DataSource(name="cube", scheme="s3", location="s3://public/x.fits"), policy)
