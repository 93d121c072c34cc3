"""Rendering the chart offline (Helm 4 through helm-python-sdk), shared by the deploy tests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cirasa"
K8S_VERSION = "1.31.0"
NAMESPACE = "astro"
SERVICES = ("gateway", "planner", "scheduler", "monitor", "accounting")

MINIMAL: dict[str, Any] = {
    "mongodb": {"url": ""},
    "persistence": {"enabled": False},
    "serviceAccount": {"create": False},
    "rbac": {"create": False},
    "grafanaDashboard": {"enabled": False},
    "networkPolicy": {"enabled": False},
    "helmTest": {"enabled": False},
    "services": {name: {"enabled": name == "gateway"} for name in SERVICES},
}
OTHER_NAMESPACE: dict[str, Any] = {
    "config": {
        "platforms": [
            {"name": "local", "backend": "local", "cores": 2, "memory_gib": 4, "max_duration_s": 600},
            {
                "name": "batch",
                "backend": "kubernetes",
                "cores": 32,
                "memory_gib": 128,
                "max_duration_s": 3600,
                "options": {"namespace": "cirasa-jobs", "data_pvc": "jobs-data"},
            },
        ]
    }
}


def _values_file(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / name).read_text())
    return values


VALUES: dict[str, dict[str, Any]] = {
    "default": {},
    "production": _values_file("values-production.yaml"),
    "minimal": MINIMAL,
    "jobs-in-another-namespace": OTHER_NAMESPACE,
    "everything": _values_file("values-everything.yaml"),
}


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_files(values: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text; raises helm.HelmValuesError or helm.HelmRenderError."""
    files: dict[str, str] = chart().render(values, name="cirasa", namespace=NAMESPACE)
    return files


def render_with(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith(".txt"):
            continue  # NOTES.txt
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@cache
def _rendered(name: str) -> str:
    return json.dumps(render_with(VALUES[name]))


def render(name: str) -> list[dict[str, Any]]:
    """One of VALUES rendered (once; every call gets its own copy)."""
    docs: list[dict[str, Any]] = json.loads(_rendered(name))
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
