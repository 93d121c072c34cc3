"""The OpenAPI document client generators read: every operation has an id of its own."""

from __future__ import annotations

import warnings
from collections import Counter

from tests.conftest import Stack


async def test_every_operation_id_is_unique(memory_stack: Stack) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = (await memory_stack.client.get("/openapi.json")).json()
    ids = Counter(
        operation["operationId"]
        for path in schema["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    )
    assert [i for i, n in ids.items() if n > 1] == []
    assert not [w for w in caught if "Duplicate Operation ID" in str(w.message)]
    assert {"get", "post"} <= set(schema["paths"]["/caesar/api/v1.0/job/{job_id}/cancel"])
