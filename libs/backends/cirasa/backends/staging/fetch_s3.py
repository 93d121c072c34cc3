"""S3 objects with boto3: the blocking client runs in worker threads, one call (or one chunk of the
body) at a time, so a cancelled or timed-out staging stops between chunks and the loop stays free."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from cirasa.backends.staging.errors import FetchFailed, StagingError, StagingRefused
from cirasa.backends.staging.policy import StagingPolicy
from cirasa.backends.staging.sink import Sink

CHUNK_BYTES = 1024 * 1024
MISSING = {"NoSuchKey", "404", "NotFound"}
DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}


def parse_location(location: str, label: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); the key is kept as written (it may hold ? or #)."""
    rest = location[5:] if location.lower().startswith("s3://") else ""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise StagingRefused(f"{label}: '{location}' is not an S3 location of the form s3://bucket/key")
    return bucket, key


def _client(policy: StagingPolicy, endpoint: str | None) -> Any:
    """A client of its own session (the default one is not thread-safe) that refuses, before sending,
    every request the policy does not allow: the endpoint itself, and any redirect to another."""
    secret = policy.s3_secret_key.get_secret_value() if policy.s3_secret_key else None
    config = Config(
        connect_timeout=policy.connect_timeout_s,
        read_timeout=policy.timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint else {},  # what S3-compatible services expect
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=policy.s3_region,
        aws_access_key_id=policy.s3_access_key,
        aws_secret_access_key=secret,
        config=config,
    )

    def check(request: Any, **_: Any) -> None:
        policy.check_url(request.url)

    client.meta.events.register("before-send.s3", check)
    return client


def _explain(exc: Exception, bucket: str, key: str, where: str, label: str) -> StagingError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in MISSING:
            return FetchFailed(f"{label}: {where}: bucket '{bucket}' has no key '{key}'")
        if code == "NoSuchBucket":
            return FetchFailed(f"{label}: {where}: there is no bucket '{bucket}'")
        if code in DENIED:
            return FetchFailed(
                f"{label}: {where}: access denied to key '{key}' in bucket '{bucket}' ({code})"
            )
        return FetchFailed(f"{label}: {where}: {code} {error.get('Message', '')}".rstrip())
    if isinstance(exc, NoCredentialsError):
        return FetchFailed(
            f"{label}: {where}: no S3 credentials (set s3_access_key and s3_secret_key in the staging "
            "policy, or give the platform AWS credentials)"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return FetchFailed(f"{label}: {where}: cannot connect to the S3 endpoint")
    if isinstance(exc, ReadTimeoutError):
        return FetchFailed(f"{label}: {where}: timed out")
    return FetchFailed(f"{label}: {where}: {exc}")


async def download(location: str, endpoint: str | None, sink: Sink, policy: StagingPolicy) -> str:
    """Stream the object into ``sink``; the host the bytes came from."""
    bucket, key = parse_location(location, sink.label)
    policy.check_url(location)
    if endpoint:
        policy.check_url(endpoint)
    client = await asyncio.to_thread(_client, policy, endpoint)
    host = urlsplit(client.meta.endpoint_url).hostname or ""
    sink.origin = f"s3://{bucket}/{key} at {client.meta.endpoint_url}"
    try:
        response = await asyncio.to_thread(client.get_object, Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            sink.refuse_announced(response.get("ContentLength"))
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                await sink.write(chunk)
        finally:
            body.close()
    except (BotoCoreError, ClientError) as exc:
        raise _explain(exc, bucket, key, sink.origin, sink.label) from exc
    finally:
        client.close()
    return host
