"""Request bodies and query parameters for the OpenAPI document, for routes that read them by hand.

The routes parse their bodies themselves (bounded streams, JSON or YAML, caesar-rest's own error
messages), so FastAPI cannot see them; each route passes one of these as ``openapi_extra``. They
describe what is accepted; they change nothing about how a request is read.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_FORM = "application/x-www-form-urlencoded"


def request_body(schema: Schema, *media_types: str, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a body of ``schema`` in each of ``media_types``."""
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {"requestBody": {"required": required, "content": content}}


def query(*names: str, described: str = "") -> dict[str, Any]:
    """``openapi_extra`` declaring optional string query parameters."""
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": described,
            }
            for name in names
        ]
    }


def form(**fields: str) -> dict[str, Any]:
    """``openapi_extra`` declaring an optional form body of string fields (and the same in the query)."""
    schema = {
        "type": "object",
        "properties": {name: {"type": "string", "description": why} for name, why in fields.items()},
    }
    return request_body(schema, _FORM, required=False)


CAESAR_JOB: Schema = {
    "type": "object",
    "required": ["app", "job_inputs", "data_inputs"],
    "properties": {
        "app": {"type": "string", "description": "an app of GET /apps"},
        "job_inputs": {
            "type": "object",
            "description": "the app's options, as GET /app/{app}/describe lists them",
        },
        "data_inputs": {"type": "string", "description": "the uuid of an uploaded file"},
        "tag": {"type": ["string", "number"], "maxLength": 256},
        "walltime_s": {"type": "integer", "minimum": 1},
    },
}

UPLOAD: Schema = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "a FITS, PNG, JPEG, GIF image or a notebook",
        },
        "tag": {"type": "string"},
    },
}

_MIN_MAX: Schema = {
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "object", "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}},
    ]
}

EXECUTION_REQUEST: Schema = {
    "type": "object",
    "description": "An IVOA ExecutionBroker ExecutionRequest (v1.0 kind/meta, or the legacy type shape)",
    "required": ["executable"],
    "properties": {
        "executable": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string"},
                "app": {"type": "string"},
                "options": {"type": "object"},
                "inputs": {"type": "array", "items": {"type": "string"}},
                "location": {"type": "string"},
                "image": {
                    "type": "object",
                    "properties": {"locations": {"type": "array", "items": {"type": "string"}}},
                },
            },
        },
        "compute": {
            "type": "object",
            "properties": {"kind": {"type": "string"}, "cores": _MIN_MAX, "memory": _MIN_MAX},
        },
        "schedule": {
            "type": "object",
            "properties": {
                "requested": {
                    "type": "object",
                    "properties": {
                        "duration": {"type": "string", "description": "an ISO-8601 duration"},
                        "start": {"type": "string", "description": "an ISO-8601 interval"},
                    },
                }
            },
        },
    },
}

SESSION_UPDATE: Schema = {
    "type": "object",
    "required": ["kind", "path", "value"],
    "properties": {
        "kind": {"type": "string", "enum": ["uri:enum-value-update"]},
        "path": {"type": "string", "enum": ["phase"]},
        "value": {"type": "string", "enum": ["ACCEPTED", "REJECTED", "CANCELLED"]},
    },
}

JSON_OR_YAML = ("application/json", "application/yaml")
