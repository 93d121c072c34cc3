"""compose.yaml against the Compose Specification's JSON schema, plus what the schema cannot say:
start order on healthy dependencies, one image for the five services, Prometheus scraping all of
them and Grafana provisioned with the dashboard."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "planner", "scheduler", "monitor", "accounting")


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())  # resolves anchors and <<
    return doc


def _schema() -> dict[str, Any]:
    # check-jsonschema vendors the compose-spec schema (from SchemaStore) as a package resource
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    """The schema is strict enough to matter: a misspelt key and a bad condition are refused."""
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    bad = json.loads(json.dumps(compose))
    bad["services"]["planner"]["depend_on"] = ["rabbitmq"]
    bad["services"]["monitor"]["depends_on"]["rabbitmq"]["condition"] = "service_ready"
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("depend_on" in m for m in messages)
    assert messages and len(messages) >= 2


def test_five_services_from_one_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(SERVICES) <= set(services)
    images = {services[name]["image"] for name in SERVICES}
    assert len(images) == 1
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == [name]
        assert svc["environment"]["CIRASA_AMQP_URL"].startswith("amqp://")
        assert svc["environment"]["CIRASA_MONGODB_URL"].startswith("mongodb://")


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*SERVICES, "rabbitmq", "mongodb"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check.get("disable") is not True
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["mongodb"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert "prometheus" in services["grafana"]["depends_on"]


def test_volumes_are_declared_and_the_data_volume_is_shared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    users: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            if isinstance(mount, str):
                source = mount.split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/")) else "volume"
            else:
                source, kind = mount["source"], mount["type"]
            if kind == "volume":
                assert source in declared, f"{name} mounts undeclared volume {source}"
                users.setdefault(source, set()).add(name)
            else:
                assert (ROOT / source).exists(), f"{name} bind-mounts missing {source}"
    # uploads (gateway) and job directories (scheduler, monitor, accounting) are one volume
    assert {"gateway", "scheduler", "monitor", "accounting"} <= users["cirasa-data"]


def _mounted_file(compose: dict[str, Any], service: str, target: str) -> Path:
    for mount in compose["services"][service]["volumes"]:
        if isinstance(mount, dict) and mount["type"] == "bind" and mount["target"] == target:
            return ROOT / mount["source"]
    raise AssertionError(f"{service} does not bind-mount {target}")


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(
        _mounted_file(compose, "prometheus", "/etc/prometheus/prometheus.yml").read_text()
    )
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = port
                assert job.get("metrics_path", "/metrics") == "/metrics"
    for name in SERVICES:
        port = compose["services"][name]["environment"]["CIRASA_HTTP_PORT"]
        assert scraped.get(name) == port, f"Prometheus does not scrape {name}:{port}"


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _mounted_file(compose, "grafana", "/etc/grafana/provisioning/dashboards")
    dashboards_dir = "/etc/grafana/dashboards"
    providers = [p for f in provisioning.glob("*.yaml") for p in yaml.safe_load(f.read_text())["providers"]]
    assert any(p["options"]["path"] == dashboards_dir for p in providers)
    dashboards = _mounted_file(compose, "grafana", dashboards_dir)
    assert (dashboards / "cirasa.json").is_file()
    datasources = _mounted_file(compose, "grafana", "/etc/grafana/provisioning/datasources")
    (source,) = [d for f in datasources.glob("*.yaml") for d in yaml.safe_load(f.read_text())["datasources"]]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads((dashboards / "cirasa.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == source["uid"]  # the dashboard finds its data source
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(dashboards_dir)
