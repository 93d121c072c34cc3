"""The chart's PrometheusRule: every alert reads only metrics the services export (a renamed metric
would leave an alert silently never firing), says what happened and what to check, and covers what
issue 12 asks for."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.deploy.chart import CHART, NAMESPACE, ROOT, by_kind, render, render_with
from tests.deploy.test_dashboard import exported_series, metric_names

# Series the alerts may read that cirasa.common.metrics does not export. None: the chart does not
# scrape RabbitMQ's own exporter (rabbitmq_queue_messages_ready...), the services measure their queues
# themselves (cirasa_queue_depth). Name any added one here explicitly.
EXTERNAL_METRICS: frozenset[str] = frozenset()

EXPECTED_ALERTS = {
    "CirasaEventsDeadLettered",  # dead-lettered messages
    "CirasaQueueGrowing",  # queue depth growing
    "CirasaOutboxBacklog",  # outbox backlog
    "CirasaJobsNotStarting",  # jobs stuck beyond their limits: pending, none starting
    "CirasaJobsStartingLate",  # ... starting later than their offers promised
    "CirasaJobsOverranWallTime",  # ... running past their wall time
    "CirasaBackendErrors",  # backend call errors
    "CirasaOffersExpiring",  # offers expiring unaccepted
}
SEVERITIES = {"info", "warning", "critical"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


METRIC = re.compile(
    r"""\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*["']([A-Za-z_:][A-Za-z0-9_:]*)["']"""
)


def metrics_in_the_code() -> dict[str, str]:
    """Every prometheus_client metric constructed in libs/ and services/: name -> file."""
    found: dict[str, str] = {}
    for folder in ("libs", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if "prometheus_client" in text:
                found |= {name: str(path.relative_to(ROOT)) for _, name in METRIC.findall(text)}
    return found


def alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def unknown_metrics(rule: dict[str, Any]) -> dict[str, set[str]]:
    """Per alert, the metric names its expression reads that nothing exports."""
    allowed = exported_series() | EXTERNAL_METRICS
    unknown: dict[str, set[str]] = {}
    for name, alert in alerts(rule).items():
        names = metric_names(alert["expr"])
        if not names:
            unknown[name] = {"<no metric at all>"}
        elif names - allowed:
            unknown[name] = names - allowed
    return unknown


@pytest.fixture(scope="module")
def rule() -> dict[str, Any]:
    (doc,) = by_kind(render("everything"), "PrometheusRule").values()
    return doc


def test_every_alert_reads_only_exported_metrics(rule: dict[str, Any]) -> None:
    assert unknown_metrics(rule) == {}, "metrics not exported by cirasa.common.metrics"
    read = set().union(*(metric_names(a["expr"]) for a in alerts(rule).values()))
    assert {"cirasa_events_consumed_total", "cirasa_queue_depth", "cirasa_outbox_pending"} <= read


def test_the_exported_metrics_are_all_the_code_has() -> None:
    """exported_series() reads cirasa.common.metrics: a metric defined anywhere else would be missed."""
    code = metrics_in_the_code()
    assert "cirasa_queue_depth" in code and "cirasa_backend_errors_total" in code
    series = exported_series()
    suffixes = ("", "_total", "_bucket", "_info")  # a counter's or a histogram's series
    missed = {n: where for n, where in code.items() if not any(f"{n}{s}" in series for s in suffixes)}
    assert not missed, f"metrics outside cirasa.common.metrics: {missed}"


def test_a_metric_nothing_exports_is_caught(rule: dict[str, Any]) -> None:
    renamed = copy.deepcopy(rule)
    growing = alerts(renamed)["CirasaQueueGrowing"]
    growing["expr"] = growing["expr"].replace("cirasa_queue_depth", "cirasa_queue_length")
    external = alerts(renamed)["CirasaOutboxBacklog"]
    external["expr"] = 'sum(rabbitmq_queue_messages_ready{queue=~"cirasa.*"}) > 10'
    assert unknown_metrics(renamed) == {
        "CirasaQueueGrowing": {"cirasa_queue_length"},
        "CirasaOutboxBacklog": {"rabbitmq_queue_messages_ready"},  # not in EXTERNAL_METRICS
    }


def test_the_alerts_cover_the_issue(rule: dict[str, Any]) -> None:
    assert set(alerts(rule)) == EXPECTED_ALERTS
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(names) == len(set(names))


def test_every_alert_says_what_happened_and_what_to_check(rule: dict[str, Any]) -> None:
    for name, alert in alerts(rule).items():
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "runbook"}, name
        assert "\n" not in annotations["runbook"] and len(annotations["runbook"]) > 40, name
        assert annotations["summary"].count("{{") == annotations["summary"].count("}}"), name
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert DURATION.match(alert.get("for", "0s")), name
        expr = alert["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        assert expr.count("[") == expr.count("]"), name


def test_alerts_read_only_the_release_namespace(rule: dict[str, Any]) -> None:
    for name, alert in alerts(rule).items():
        selectors = re.findall(r"\{([^}]*)\}", alert["expr"])
        assert selectors, name
        assert all(f'namespace="{NAMESPACE}"' in s for s in selectors), (name, selectors)
    values = {"prometheusRule": {"enabled": True, "seriesSelector": 'job="cirasa"'}}
    (other,) = by_kind(render_with(values), "PrometheusRule").values()
    for alert in alerts(other).values():
        assert 'job="cirasa"' in alert["expr"] and "namespace=" not in alert["expr"]


def test_thresholds_come_from_the_values() -> None:
    thresholds = {"queueDepth": 7, "backendErrors": 11, "pendingWithoutStart": "3h"}
    values = {"prometheusRule": {"enabled": True, "thresholds": thresholds}}
    found = alerts(next(iter(by_kind(render_with(values), "PrometheusRule").values())))
    assert "> 7\n" in found["CirasaQueueGrowing"]["expr"]
    assert "> 11" in found["CirasaBackendErrors"]["expr"]
    assert "[3h]" in found["CirasaJobsNotStarting"]["expr"] and found["CirasaJobsNotStarting"]["for"] == "3h"


def test_no_rule_unless_asked() -> None:
    assert by_kind(render("default"), "PrometheusRule") == {}
    assert by_kind(render("production"), "PrometheusRule") == {}


def test_the_readme_lists_every_alert() -> None:
    readme = (CHART / "README.md").read_text()
    assert set(re.findall(r"^\| (Cirasa\w+) \|", readme, re.M)) == EXPECTED_ALERTS
