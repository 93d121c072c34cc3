"""Custom resources checked against their CustomResourceDefinitions' own schemas, as strictly as
kubernetes-validate checks the built-in kinds.

kubernetes-validate ships only the Kubernetes API's schemas, and no package on PyPI ships these
operators' CRDs as JSON schemas, so the schemas are vendored in ``crds/`` (see its README.md): the
``openAPIV3Schema`` of each CRD as its project publishes it, descriptions dropped. Here they become
JSON Schemas the way the API server applies them with strict field validation:

* an object that lists its properties accepts no other key (unless it says
  ``x-kubernetes-preserve-unknown-fields``): the server's pruning and ``fieldValidation=Strict``;
* ``nullable: true`` admits null;
* ``x-kubernetes-list-type`` ``set`` and ``map`` lists hold no duplicates (of their map keys);
* ``x-kubernetes-validations`` (CEL) rules are evaluated from a table of the rules these CRDs carry,
  written in Python; a rule not in the table fails the check, so a refreshed CRD cannot bring an
  unchecked rule in silently;
* ``metadata`` is checked against the Kubernetes 1.31 ObjectMeta schema of kubernetes-validate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

CRDS = Path(__file__).resolve().parent / "crds"
K8S_SCHEMAS = "kubernetes-json-schema/v1.31.0-local-strict"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"

# the CEL rules of the vendored CRDs, as Python
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # RabbitmqCluster spec.rabbitmq.envConfig
    "!self.contains('$(') && !self.contains('`')": lambda s: "$(" not in s and "`" not in s,
    # ScaledObject spec
    "!has(self.minReplicaCount) || self.minReplicaCount <= "
    "(has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": lambda spec: (
        "minReplicaCount" not in spec or spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100)
    ),
}


def structural(node: Any) -> Any:
    """A CRD's OpenAPI v3 structural schema as a strict JSON Schema (draft 2020-12)."""
    if isinstance(node, list):
        return [structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: structural(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    closed = not out.get("x-kubernetes-preserve-unknown-fields")
    if closed and out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _list_type(
    validator: Any, list_type: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "array") or list_type == "atomic":
        return
    if list_type == "set":
        keys = [json.dumps(item, sort_keys=True) for item in instance]
    else:  # map: unique by its map keys
        names = schema.get("x-kubernetes-list-map-keys", [])
        keys = [json.dumps([item.get(n) for n in names]) for item in instance]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        yield jsonschema.ValidationError(f"duplicate entries in a list of type {list_type}: {duplicates}")


def _cel(
    validator: Any, rules: list[dict[str, str]], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    for rule in rules:
        check = CEL_RULES.get(rule["rule"])
        if check is None:
            yield jsonschema.ValidationError(f"CEL rule not in custom_resources.CEL_RULES: {rule['rule']}")
        elif not check(instance):
            yield jsonschema.ValidationError(rule.get("message") or f"fails {rule['rule']}")


StrictCRDValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel},
)


@cache
def _crds() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.json")):
        doc = json.loads(path.read_text())
        found[(doc["apiVersion"], doc["kind"])] = doc
    return found


def known_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every custom resource a schema is vendored for."""
    return set(_crds())


@cache
def _validator(api_version: str, kind: str) -> Any:
    schema = structural(_crds()[(api_version, kind)]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {
        "$ref": f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return StrictCRDValidator(schema, registry=_kubernetes_registry(required=True))


@cache
def _kubernetes_registry(required: bool) -> Registry:
    """kubernetes-validate's 1.31 strict definitions; without ``required`` for partial objects (patches)."""
    text = resources.files("kubernetes_validate").joinpath(f"{K8S_SCHEMAS}/_definitions.json").read_text()
    definitions = json.loads(text)
    if not required:
        definitions = _without_required(definitions)
    registry: Registry = Resource.from_contents(definitions) @ Registry()
    return registry


def _without_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


def errors(doc: dict[str, Any]) -> list[str]:
    """What is wrong with a custom resource, one line each; a kind with no vendored schema is an error."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key not in _crds():
        return [f"no schema vendored for {key[1]} {key[0]} in {CRDS.name}/"]
    found = _validator(*key).iter_errors(doc)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found)


def partial_errors(obj: Any, definition: str) -> list[str]:
    """What is wrong with a partial Kubernetes object (a patch: no field required), e.g. the StatefulSet
    spec an operator merges into its own (definition ``io.k8s.api.apps.v1.StatefulSetSpec``)."""
    schema = {"$ref": f"{K8S_DEFINITIONS}#/$defs/{definition}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_kubernetes_registry(required=False))
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj))
