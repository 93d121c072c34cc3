"""values.schema.json: Helm checks every value against it at install, upgrade, template and lint time,
so a misspelt or ill-typed value fails there, naming the value, instead of rendering something else.
Its CIRASA config part is generated from the settings' models and must stay so."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, VALUES, render_files
from tests.deploy.chart_schema import config_defs, values_schema


def test_the_config_part_is_generated_from_the_settings() -> None:
    schema = values_schema()
    generated = config_defs()
    stale = sorted(name for name in generated if schema["$defs"].get(name) != generated[name])
    assert not stale and schema["x-generated-defs"] == sorted(generated), (
        f"values.schema.json is stale for {stale}: .venv/bin/python -m tests.deploy.chart_schema"
    )
    assert schema["properties"]["config"] == {"$ref": "#/$defs/Settings"}


def test_the_schema_is_a_valid_json_schema() -> None:
    schema = values_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert helm.Chart.load(CHART).schema == schema  # the chart ships it


def test_every_value_of_values_yaml_is_described() -> None:
    """No value without a schema entry (it would be refused) and no schema entry without a default."""
    defaults: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    described = set(values_schema()["properties"])
    assert set(defaults) == described - {"global"}


@pytest.mark.parametrize("values", VALUES)
def test_every_values_file_passes(values: str) -> None:
    helm.Chart.load(CHART).validate_schema(VALUES[values])


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    (
        {"services": {"gateway": {"replicas": "2"}}},
        "at '/services/gateway/replicas': got string, want integer",
    ),
    ({"services": {"gatway": {"enabled": True}}}, "additional properties 'gatway' not allowed"),
    ({"services": {"planner": {"resources": {"requets": {"cpu": "1"}}}}}, "'requets' not allowed"),
    (
        {"services": {"planner": {"autoscaling": {"maxReplicas": 0}}}},
        "/services/planner/autoscaling/maxReplicas",
    ),
    (
        {"rabbitmqCluster": {"replicas": 2}},
        "at '/rabbitmqCluster/replicas': value must be one of 1, 3, 5, 7",
    ),  # odd: a quorum
    ({"logLevel": "verbose"}, "at '/logLevel': value must be one of"),
    ({"keda": {"enabeld": True}}, "additional properties 'enabeld' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ({"persistence": {"size": "ten gigs"}}, "at '/persistence/size'"),
    ({"rabbitmq": {"url": "http://rabbitmq:15672"}}, "at '/rabbitmq/url'"),
    ({"mongodbCommunity": {"connectionStringKey": "uri"}}, "at '/mongodbCommunity/connectionStringKey'"),
    ({"prometheusRule": {"thresholds": {"pendingWithoutStart": "an hour"}}}, "'an hour' does not match"),
    ({"helmTest": {"timeoutSeconds": "5m"}}, "at '/helmTest/timeoutSeconds'"),
    # the CIRASA config file, checked as the settings would (they would ignore a misspelt key)
    (
        {"config": {"gateway": {"quotas": {"active_job": 5}}}},
        "additional properties 'active_job' not allowed",
    ),
    (
        {"config": {"platforms": [{"name": "Big One", "cores": 1, "memory_gib": 1, "max_duration_s": 1}]}},
        "'Big One' does not match pattern",
    ),
    (
        {"config": {"platforms": [{"name": "x", "backend": "lokal", "cores": 1, "memory_gib": 1}]}},
        "/config/platforms/0/backend': value must be one of",
    ),
    (
        {"config": {"platforms": [{"name": "x", "cores": 1, "memory_gib": 1}]}},
        "missing property 'max_duration_s'",
    ),
    ({"config": {"http_limits": {"header_timeout_s": 0}}}, "/config/http_limits/header_timeout_s"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_a_wrong_value_fails_rendering(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render_files(values)
    assert message in str(caught.value)


def test_lint_reports_a_wrong_value() -> None:
    report = helm.lint(CHART, {"services": {"gateway": {"enabled": "yes"}}}, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])
    assert "/services/gateway/enabled" in str(report)
