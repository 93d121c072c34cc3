"""The Grafana dashboard parses, and every PromQL expression on it names only metrics the services
export (``cirasa.common.metrics``), so a renamed metric cannot leave a panel silently empty."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from cirasa.common import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "cirasa.json"

# the series each metric type exposes, after the base name
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "atan2", "inf", "nan", "e"}  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported_series() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows ($__rate_interval...)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # other Grafana variables
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word in _AGGREGATIONS or word in _KEYWORDS:
            continue  # a function call, an aggregation or a keyword
        if re.fullmatch(r"\d+(e\d+)?", word) or text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def test_metric_name_parser() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, service) (rate(cirasa_event_handling_seconds_bucket"
        '{service=~"$service", outcome!="x"}[$__rate_interval]))) / on(service) group_left '
        "max by (service) (up offset 5m) or vector(0) * 1e3"
    )
    assert metric_names(expr) == {"cirasa_event_handling_seconds_bucket", "up"}
    assert "cirasa_jobs_total" in exported_series()
    assert "cirasa_event_handling_seconds_bucket" in exported_series()
    assert "cirasa_jobs_active" in exported_series()


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("title"), panel
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr") for t in targets), f"panel {panel['title']!r} queries nothing"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids))


def test_every_query_names_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    unknown: dict[str, set[str]] = {}
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            names = metric_names(target["expr"])
            assert names, f"no metric found in {target['expr']!r}"
            if names - exported:
                unknown[panel["title"]] = names - exported
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for name in re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", text):
            if name not in exported:
                unknown[f"variable {variable['name']}"] = {name}
    assert not unknown, f"metrics not exported by cirasa.common.metrics: {unknown}"
