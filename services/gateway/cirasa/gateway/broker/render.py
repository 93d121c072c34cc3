"""Offer sets and sessions as ExecutionBroker v1.0 documents (``kind`` + ``meta`` on every component)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from cirasa.common.events import as_utc, utcnow
from cirasa.gateway.broker import kinds
from cirasa.gateway.broker.state import session_phase
from cirasa.gateway.caesar import PREFIX as CAESAR_PREFIX
from cirasa.gateway.documents import OfferSet, Session
from cirasa.gateway.uws import PREFIX as UWS_PREFIX

PHASE_OPTIONS = {
    "OFFERED": ["ACCEPTED", "REJECTED", "CANCELLED"],
    "ACCEPTED": ["CANCELLED"],
    "WAITING": ["CANCELLED"],
    "PREPARING": ["CANCELLED"],
    "RUNNING": ["CANCELLED"],
}
_COMPONENT_PHASE = {
    "OFFERED": "INITIALIZING",
    "ACCEPTED": "WAITING",
    "REJECTED": "CANCELLED",
    "EXPIRED": "CANCELLED",
}


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat().replace("+00:00", "Z") if value else None


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = (
        "PT"
        + (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{secs}S" if secs else "")
    )
    return out if out != "PT" else "PT0S"


def _meta(
    uuid: str,
    base: str,
    path: str,
    created: datetime,
    modified: datetime | None = None,
    name: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    options: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "uuid": uuid,
        "url": f"{base}/{path}/{uuid}",
        "created": iso(created),
        "modified": iso(modified or created),
    }
    if name:
        meta["name"] = name
    if messages:
        meta["messages"] = [{**m, "time": iso(m.get("time"))} for m in messages]
    if options:
        meta["options"] = options
    return meta


def render_session(doc: Session, request: dict[str, Any], base: str) -> dict[str, Any]:
    phase = session_phase(doc)
    start = as_utc(doc.start)
    run = timedelta(seconds=doc.duration_s)
    component_phase = _COMPONENT_PHASE.get(phase, phase if phase != "COMPLETED" else "COMPLETED")
    options = (
        [{"kind": kinds.ENUM_OPTION, "path": "phase", "values": PHASE_OPTIONS[phase]}]
        if phase in PHASE_OPTIONS
        else []
    )
    memory = max(1, math.ceil(doc.memory_gib))
    schedule = {
        "preparing": {
            "start": iso(start - timedelta(seconds=doc.staging_s)),
            "duration": duration(doc.staging_s),
        },
        "available": {
            "start": f"{iso(start)}/{duration(run.total_seconds())}",
            "duration": duration(run.total_seconds()),
        },
        "releasing": {"start": iso(start + run), "duration": "PT0S"},
    }
    executable = dict(request.get("executable") or {})
    exe_meta: dict[str, Any] = executable["meta"] if isinstance(executable.get("meta"), dict) else {}
    executable["meta"] = {**exe_meta, "uuid": doc.id + "-exe"}
    executable["phase"] = component_phase
    compute_req: dict[str, Any] = request["compute"] if isinstance(request.get("compute"), dict) else {}
    compute_meta: dict[str, Any] = compute_req["meta"] if isinstance(compute_req.get("meta"), dict) else {}
    out: dict[str, Any] = {
        "kind": kinds.SIMPLE_SESSION,
        "meta": _meta(
            doc.id,
            base,
            "sessions",
            doc.created,
            doc.modified,
            messages=doc.messages,
            options=options,
            name=f"{doc.platform}: {doc.description or 'offer'}",
        ),
        "phase": phase,
        "expires": iso(doc.expires_at) if doc.offer_state == "OFFERED" else None,
        "schedule": schedule,
        "executable": executable,
        "compute": {
            "kind": kinds.SIMPLE_COMPUTE,
            "meta": {
                **compute_meta,
                "uuid": doc.id + "-compute",
                "description": f"platform {doc.platform}",
            },
            "cores": {"min": doc.cores, "max": doc.cores},
            "memory": {"min": memory, "max": memory},
            "phase": component_phase,
            "schedule": schedule,
        },
        "storage": _components(request.get("storage"), doc.id, "storage", _data_phase(doc, component_phase)),
        "data": _components(request.get("data"), doc.id, "data", _data_phase(doc, component_phase)),
        "connectors": _connectors(doc, phase, base),
    }
    volumes = compute_req.get("volumes") if "volumes" in compute_req else request.get("volumes")
    if volumes:
        out["compute"]["volumes"] = _components(volumes, doc.id, "volume", None)
    if doc.cost_core_hours is not None:
        out["costs"] = [
            {
                "kind": "urn:cirasa:eb:cost:core-hours",
                "type": "urn:cirasa:cost:core-hours",
                "description": "cores x wall-time limit",
                "min": doc.cost_core_hours,
                "max": doc.cost_core_hours,
            }
        ]
    if doc.staging is not None:
        text = doc.staging.describe()
        out["meta"].setdefault("messages", []).append(
            {
                "kind": "urn:cirasa:eb:staging",
                "level": "ERROR" if doc.staging.error else "INFO",
                "message": text,
                "template": text,
                "values": {
                    "done_bytes": str(doc.staging.done_bytes),
                    "total_bytes": str(doc.staging.total_bytes or ""),
                    "done_resources": str(doc.staging.done_resources),
                    "total_resources": str(doc.staging.total_resources),
                },
                "time": iso(doc.staging.at or doc.modified),
            }
        )
    if doc.job_status:
        out["meta"].setdefault("messages", []).append(
            {
                "kind": "urn:cirasa:eb:job-status",
                "level": "INFO",
                "message": doc.job_status,
                "template": doc.job_status,
                "values": {},
                "time": iso(doc.modified),
            }
        )
    return out


def _connectors(doc: Session, phase: str, base: str) -> list[dict[str, Any]]:
    """Where a session's results are: its job's UWS results and its whole directory as an archive."""
    if doc.job_id is None or phase not in ("RUNNING", "COMPLETED", "FAILED"):
        return []
    status = "AVAILABLE" if phase == "RUNNING" else "FINISHED"
    return [
        {
            "kind": kinds.RESULTS_CONNECTOR,
            "status": status,
            "protocol": "HTTP",
            "location": f"{base}{UWS_PREFIX}/jobs/{doc.job_id}/results",
        },
        {
            "kind": kinds.ARCHIVE_CONNECTOR,
            "status": status,
            "protocol": "HTTP",
            "location": f"{base}{CAESAR_PREFIX}/job/{doc.job_id}/output",
        },
    ]


def _data_phase(doc: Session, session_component_phase: str) -> str:
    """A data or storage component's phase: PREPARING while staged, AVAILABLE once staged."""
    if doc.staging is None:
        return session_component_phase
    if doc.staging.error:
        return "FAILED"
    if not doc.staging.done:
        return "PREPARING"
    return (
        session_component_phase
        if session_component_phase in ("COMPLETED", "FAILED", "CANCELLED")
        else "AVAILABLE"
    )


def _components(raw: Any, session_id: str, what: str, phase: str | None) -> list[dict[str, Any]]:
    """The request's own data, storage or volume items, each with an id (and a phase) of the session."""
    items = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    out = []
    for index, item in enumerate(i for i in items if isinstance(i, dict)):
        meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
        component = {**item, "meta": {**meta, "uuid": f"{session_id}-{what}-{index}"}}
        if phase is not None:
            component["phase"] = phase
        out.append(component)
    return out


def render_offerset(doc: OfferSet, sessions: list[Session], base: str) -> dict[str, Any]:
    return {
        "kind": kinds.OFFERSET,
        "meta": _meta(doc.id, base, "offersets", doc.created_at, messages=doc.messages),
        "result": doc.result if doc.result in ("YES", "NO") else "NO",
        "offers": [render_session(s, doc.request or {}, base) for s in sessions],
    }


def error_body(status: int, text: str) -> dict[str, Any]:
    return {"kind": kinds.ERROR, "status": status, "message": text, "time": iso(utcnow())}


def strip_nulls(value: Any) -> Any:
    """Omit nulls, as the reference implementation does."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value
