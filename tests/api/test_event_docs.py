"""The event contract served by the gateway: /asyncapi (a page), /asyncapi.json, the JSON Schemas."""

from __future__ import annotations

import json

import pytest

from cirasa.common.events import EVENT_TYPES
from cirasa.common.schemas import ASYNCAPI, published_schema
from tests.conftest import Stack


async def test_the_page_and_the_documents(memory_stack: Stack) -> None:
    client = memory_stack.client
    page = await client.get("/asyncapi")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, cls in EVENT_TYPES.items():
        assert f'id="{name}-v1"' in page.text and f"<code>{cls.routing_key}</code>" in page.text
    assert "src=" not in page.text  # nothing to load from elsewhere
    document = await client.get("/asyncapi.json")
    assert document.json() == json.loads(ASYNCAPI.read_text())
    index = (await client.get("/events/schemas")).json()
    assert set(index["v1"]) == set(EVENT_TYPES)
    schema = await client.get(index["v1"]["JobStateChanged"])
    assert schema.headers["content-type"] == "application/schema+json"
    assert schema.json() == published_schema(1, "JobStateChanged")


@pytest.mark.parametrize(
    "path",
    ["/events/schemas/v1/Nope.json", "/events/schemas/v9/JobStateChanged.json", "/events/schemas/v1/..json"],
)
async def test_unknown_schemas_are_404(memory_stack: Stack, path: str) -> None:
    r = await memory_stack.client.get(path)
    assert r.status_code == 404
