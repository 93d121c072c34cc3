"""A real S3 server on 127.0.0.1 (moto's server mode) for staging tests: the ``s3_url`` fixture (one
server per module) and ``bucket`` (a fresh bucket, emptied and removed afterwards)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

ACCESS, SECRET = "testing-key", "testing-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer  # imported here: moto is slow to import

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_url: str) -> Any:
    import boto3

    s3 = boto3.resource(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
    )
    made = s3.create_bucket(Bucket=f"survey-{uuid.uuid4().hex[:8]}")
    yield made
    made.objects.all().delete()
    made.delete()
