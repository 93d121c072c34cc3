"""The event contract for other components, served next to the API: ``/asyncapi`` (a page),
``/asyncapi.json``, and every published JSON Schema under ``/events/schemas`` (docs/events.md)."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from cirasa.common.events import EVENT_TYPES
from cirasa.common.schemas import ASYNCAPI, EVENTS_DIR, published_path, published_schema, published_versions
from cirasa.gateway.errors import NotFound

router = APIRouter(tags=["event contract"])
NAME = re.compile(r"^[A-Za-z]{1,64}$")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CIRASA events</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top}}code{{font-size:.9em}}h2{{margin-top:2rem}}</style></head><body>
<h1>CIRASA events</h1>
<p>Every event goes to one durable topic exchange with its routing key; bind a queue of your own to
follow them. Delivery is at least once: deduplicate by <code>event_id</code>; order a job's events by
<code>seq</code>. The whole contract: <a href="/asyncapi.json">AsyncAPI document</a>,
<a href="/events/schemas">JSON Schemas</a>.</p>
{sections}
</body></html>"""


def field_rows(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        kind = (
            prop.get("type")
            or prop.get("$ref", "").rsplit("/", 1)[-1]
            or " | ".join(
                str(option.get("type") or option.get("$ref", "").rsplit("/", 1)[-1])
                for option in prop.get("anyOf", [])
            )
        )
        note = prop.get("description", "")
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td>"
            f"<td>{html.escape(str(kind))}</td><td>{html.escape(str(note))}</td></tr>"
        )
    return "".join(rows)


def section(version: int, name: str) -> str:
    cls = EVENT_TYPES.get(name)
    schema = published_schema(version, name) or {}  # that version's, not the code's current one
    key = cls.routing_key if cls else "?"
    url = f"/events/schemas/v{version}/{name}.json"
    return (
        f'<h2 id="{name}-v{version}">{name} <small>v{version}</small></h2>'
        f'<p>routing key <code>{html.escape(key)}</code> · <a href="{url}">JSON Schema</a></p>'
        f"<p>{html.escape(schema.get('description', ''))}</p>"
        f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{field_rows(schema)}</table>"
    )


@router.get("/asyncapi", response_class=HTMLResponse)
async def asyncapi_page() -> Response:
    sections = "".join(section(v, n) for v, names in published_versions().items() for n in names)
    return HTMLResponse(PAGE.format(sections=sections))


@router.get("/asyncapi.json")
async def asyncapi_json() -> Response:
    return FileResponse(ASYNCAPI, media_type="application/json")


@router.get("/events/schemas")
async def schema_index() -> Response:
    versions = published_versions()
    return JSONResponse(
        {f"v{v}": {n: f"/events/schemas/v{v}/{n}.json" for n in names} for v, names in versions.items()}
    )


@router.get("/events/schemas/v{version}/{name}.json")
async def event_schema(version: int, name: str) -> Response:
    path = published_path(version, name) if NAME.match(name) else None
    if path is None or not path.is_file() or EVENTS_DIR not in path.parents:
        raise NotFound(f"No published schema for event {name} version {version}")
    return FileResponse(path, media_type="application/schema+json")
