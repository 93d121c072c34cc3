"""Schema-driven fuzzing of every operation of the gateway's OpenAPI document: no answer is a 5xx.

schemathesis runs the ASGI app in process on an event loop of its own, so the five services start in
the app's lifespan (on that loop) rather than in a pytest-asyncio fixture. Generation is derandomized
and bounded per operation, so the run is the same every time and takes about a minute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi

from cirasa.cli.runtime import SERVICES, build_service, http_app
from cirasa.common.bus import MemoryBroker
from cirasa.common.settings import Settings

EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 25, schemathesis.GenerationMode.NEGATIVE: 15}


@dataclass
class FuzzReport:
    operations: int = 0
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # "POST /job 400": how many

    def __str__(self) -> str:
        seen = ", ".join(f"{k}: {n}" for k, n in sorted(self.statuses.items()))
        return (
            f"fuzzed {self.operations} operations with {self.requests} requests: "
            f"{len(self.server_errors)} 5xx\n{seen}"
        )


def gateway_app(config: Settings) -> FastAPI:
    """The gateway with all five services in memory, started and stopped by the app's lifespan."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    broker = MemoryBroker()
    services = [build_service(name, config, broker) for name in SERVICES]
    app = http_app(services)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for service in services:
            await service.start()
        yield
        for service in reversed(services):
            await service.stop()

    app.router.lifespan_context = lifespan
    return app


def fuzz(strategy: SearchStrategy[schemathesis.Case], examples: int, report: FuzzReport) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(timeout=30)
        report.requests += 1
        report.statuses[f"{case.method} {case.path} {response.status_code}"] += 1
        if response.status_code >= 500:
            report.server_errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        case.validate_response(response, checks=[not_a_server_error])

    with suppress(Unsatisfiable):  # nothing to make invalid (an operation without parameters or body)
        run()


def test_no_server_errors(settings: Settings, capsys: object) -> None:
    assert not settings.gateway.auth.enabled
    report = FuzzReport()
    app = gateway_app(settings)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            report.operations += 1
            for mode, examples in EXAMPLES.items():
                fuzz(operation.as_strategy(generation_mode=mode), examples, report)
    finally:
        asgi.shutdown_lifespans()
        print(report)
    assert report.operations > 40 and report.requests > 1000
    assert report.server_errors == []
