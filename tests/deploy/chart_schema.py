"""The CIRASA config part of the chart's values.schema.json, generated from the settings' own models.

The chart renders ``config`` into the file every service reads (``CIRASA_CONFIG``). The settings ignore
keys they do not know, so a misspelt one would be dropped without a word: the schema generated here
forbids them, and Helm then refuses such values at install time. Regenerate after changing
``cirasa.common.settings``::

    .venv/bin/python -m tests.deploy.chart_schema
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cirasa.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VALUES_SCHEMA = ROOT / "deploy" / "helm" / "cirasa" / "values.schema.json"
ROOT_MODEL = "Settings"


def _strict(node: Any) -> Any:
    """Pydantic's JSON schema without titles, every model closed to unknown keys."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if key != "title"}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def config_defs() -> dict[str, Any]:
    """The settings' models as ``$defs`` entries, the root one named ``Settings``."""
    schema = Settings.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})
    defs[ROOT_MODEL] = schema
    return {name: _strict(defs[name]) for name in sorted(defs)}


def values_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(VALUES_SCHEMA.read_text())
    return schema


def main() -> None:
    schema = values_schema()
    generated = config_defs()
    # the chart's own $defs stay; the settings' ones are replaced (and removed when gone from the code)
    previous = set(schema.get("x-generated-defs", []))
    chart_defs = {name: d for name, d in schema["$defs"].items() if name not in previous}
    schema["x-generated-defs"] = sorted(generated)
    schema["$defs"] = {**chart_defs, **generated}
    VALUES_SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"wrote {VALUES_SCHEMA.relative_to(ROOT)}: {', '.join(sorted(generated))}")


if __name__ == "__main__":
    main()
