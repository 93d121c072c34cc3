"""The published event contract: one JSON Schema per event type and version, and what a change to one
would break for a consumer.

The schemas are generated from the event models (``cirasa schemas`` writes them) and committed under
``published/events/v<version>/<Type>.json``, beside ``published/asyncapi.json``; the gateway serves
both. A consumer reads what producers write, so a change is *breaking* when a consumer written
against the published schema could misread an event of the new one: a field removed or no longer
always present, a type widened or changed, a constant changed. Adding optional or required fields
and adding enum values are compatible: consumers ignore fields they do not know and must tolerate
unknown enum values (docs/events.md). A breaking change needs a new ``version`` of the event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cirasa.common.events import EVENT_TYPES, Event

PUBLISHED = Path(__file__).parent / "published"
EVENTS_DIR = PUBLISHED / "events"
ASYNCAPI = PUBLISHED / "asyncapi.json"

Schema = dict[str, Any]


def version_of(cls: type[Event]) -> int:
    return int(cls.model_fields["version"].default)


def event_schema(cls: type[Event]) -> Schema:
    """What producers write: the serialization schema, with the event's version in its id."""
    schema = cls.model_json_schema(mode="serialization")
    name = cls.model_fields["type"].default
    return {"$id": f"urn:cirasa:events:v{version_of(cls)}:{name}", **schema}


def current_schemas() -> dict[tuple[int, str], Schema]:
    return {(version_of(cls), name): event_schema(cls) for name, cls in EVENT_TYPES.items()}


def published_path(version: int, name: str, root: Path = EVENTS_DIR) -> Path:
    return root / f"v{version}" / f"{name}.json"


def published_schema(version: int, name: str, root: Path = EVENTS_DIR) -> Schema | None:
    path = published_path(version, name, root)
    return json.loads(path.read_text()) if path.is_file() else None


def published_versions(root: Path = EVENTS_DIR) -> dict[int, list[str]]:
    """Every published version and the event types it has, oldest first."""
    versions = sorted(int(d.name[1:]) for d in root.glob("v*") if d.name[1:].isdigit())
    return {v: sorted(p.stem for p in (root / f"v{v}").glob("*.json")) for v in versions}


def dumps(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


# --- compatibility ------------------------------------------------------------------------------


def _resolve(schema: Schema, root: Schema) -> Schema:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}), root)
    return schema


def _types(schema: Schema, root: Schema) -> set[str]:
    """The JSON types a value of ``schema`` may have (``anyOf`` flattened, enums by their values' type)."""
    schema = _resolve(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return set().union(*(_types(s, root) for s in options))
    if "type" in schema:
        kinds = schema["type"]
        return set(kinds) if isinstance(kinds, list) else {kinds}
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {type(v).__name__ for v in values}
    return {"any"}


def _object_of(schema: Schema, root: Schema) -> Schema | None:
    """The object schema a value is when it is an object (through ``anyOf`` with null)."""
    schema = _resolve(schema, root)
    if "properties" in schema:
        return schema
    for option in schema.get("anyOf", []):
        found = _object_of(option, root)
        if found is not None:
            return found
    return None


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What a consumer written against ``old`` could misread in an event valid under ``new``."""
    return _compare(old, new, old, new, "")


def _compare(old: Schema, new: Schema, old_root: Schema, new_root: Schema, where: str) -> list[str]:
    problems: list[str] = []
    old_s, new_s = _resolve(old, old_root), _resolve(new, new_root)
    old_types, new_types = _types(old_s, old_root), _types(new_s, new_root)
    allowed = old_types | ({"integer"} if "number" in old_types else set())  # an integer is a number
    if "any" not in old_types and not new_types <= allowed:
        widened = ", ".join(sorted(new_types - allowed))
        problems.append(f"{where or 'event'}: may now be {widened} (was {', '.join(sorted(old_types))})")
    if "const" in old_s and new_s.get("const") != old_s["const"]:
        problems.append(f"{where}: the constant {old_s['const']!r} changed to {new_s.get('const')!r}")
    if isinstance(old_s.get("items"), dict) and isinstance(new_s.get("items"), dict):
        problems += _compare(old_s["items"], new_s["items"], old_root, new_root, f"{where}[]")
    old_obj, new_obj = _object_of(old_s, old_root), _object_of(new_s, new_root)
    if old_obj is None or new_obj is None:
        return problems
    new_props, new_required = new_obj.get("properties", {}), set(new_obj.get("required", []))
    if old_obj.get("additionalProperties") is False:
        added = sorted(set(new_props) - set(old_obj.get("properties", {})))
        if added:
            problems.append(
                f"{where or 'event'}: consumers of the published schema refuse the new {', '.join(added)}"
            )
    for name, old_prop in old_obj.get("properties", {}).items():
        path = f"{where}.{name}" if where else name
        if name not in new_props:
            problems.append(f"{path}: removed")
            continue
        if name in old_obj.get("required", []) and name not in new_required:
            problems.append(f"{path}: no longer always present")
        problems += _compare(old_prop, new_props[name], old_root, new_root, path)
    return problems
