"""IVOA ExecutionBroker v1.0 endpoints: ``/offersets`` and ``/sessions``, JSON and YAML in and out.

Errors are real: 400 bad input, 404 unknown, 409 an illegal phase change, 410 an expired offer — never
a silent 200 with the session unchanged.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cirasa.common.events import TERMINAL_STATES, as_utc, new_id, utcnow
from cirasa.gateway.auth import current_user
from cirasa.gateway.broker import kinds
from cirasa.gateway.broker.render import error_body, render_offerset, render_session, strip_nulls
from cirasa.gateway.broker.request import RequestError, load_body, parse_request
from cirasa.gateway.broker.state import BrokerState, session_phase
from cirasa.gateway.service import Gateway

ANSWER_TIMEOUT_S = 10.0
DECISIONS = ("ACCEPTED", "REJECTED", "CANCELLED")


def respond(
    request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    accept = request.headers.get("accept", "")
    clean = strip_nulls(body)
    if "yaml" in accept or "yml" in accept:
        return Response(
            yaml.safe_dump(clean, sort_keys=False, allow_unicode=True),
            status_code=status,
            media_type="application/yaml",
            headers=headers,
        )
    return Response(json.dumps(clean), status_code=status, media_type="application/json", headers=headers)


def fail(request: Request, status: int, text: str) -> Response:
    return respond(request, error_body(status, text), status)


def build_broker_router() -> APIRouter:
    r = APIRouter(tags=["IVOA ExecutionBroker"])

    def parts(request: Request) -> tuple[Gateway, BrokerState, str]:
        gateway: Gateway = request.app.state.gateway
        return gateway, gateway.broker, str(request.base_url).rstrip("/")

    async def read(request: Request) -> Any:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > 1024 * 1024:
                raise RequestError("request body over 1024 KiB")
        return load_body(raw, request.headers.get("content-type"))

    async def propose(
        request: Request, user: str, direct: bool
    ) -> tuple[dict[str, Any] | None, Response | None]:
        gateway, broker, _ = parts(request)
        try:
            body = await read(request)
            largest = max(gateway.settings.platforms, key=lambda p: p.cores)
            limits = (
                largest.cores,
                max(p.memory_gib for p in gateway.settings.platforms),
                max(p.max_duration_s for p in gateway.settings.platforms),
            )
            parsed = parse_request(body, limits)
        except RequestError as exc:
            return None, fail(request, 400, str(exc))
        files = []
        for file_id in parsed.input_ids:
            file = await gateway.find_file(user, file_id)
            if file is None:
                parsed.no.append(f"input file {file_id} not found")
            else:
                files.append(file)
        if parsed.app and not parsed.no and len(files) != 1:
            parsed.no.append(f"app {parsed.app} takes exactly one input file id, got {len(parsed.input_ids)}")
        doc = await broker.propose(user, parsed, files, body, direct, new_id())
        await gateway.relay.flush(broker.offersets, doc["_id"])

        async def answered() -> dict[str, Any] | None:
            current = await broker.offerset(user, doc["_id"])
            if current is None or current["result"] == "PENDING":
                return None
            if current["result"] == "YES" and len(current["offer_ids"]) < (current["set_size"] or 1):
                return None
            return current

        return await broker.wait(answered, ANSWER_TIMEOUT_S), None

    @r.post("/offersets", status_code=303)
    async def post_offerset(request: Request, user: str = Depends(current_user)) -> Response:
        _, broker, base = parts(request)
        doc, early = await propose(request, user, direct=False)
        if early is not None:
            return early
        if doc is None:
            return fail(request, 503, "the planner did not answer in time; try GET on the offer set later")
        body = render_offerset(doc, await broker.sessions_of(doc["_id"]), base)
        return respond(request, body, 303, {"Location": f"{base}/offersets/{doc['_id']}"})

    @r.get("/offersets/{offerset_id}")
    async def get_offerset(request: Request, offerset_id: str, user: str = Depends(current_user)) -> Response:
        _, broker, base = parts(request)
        doc = await broker.offerset(user, offerset_id)
        if doc is None:
            return fail(request, 404, f"no offer set {offerset_id}")
        return respond(request, render_offerset(doc, await broker.sessions_of(offerset_id), base))

    @r.get("/sessions/{session_id}")
    async def get_session(request: Request, session_id: str, user: str = Depends(current_user)) -> Response:
        _, broker, base = parts(request)
        doc = await broker.session(user, session_id)
        if doc is None:
            return fail(request, 404, f"no session {session_id}")
        offerset = await broker.offerset(user, doc["offerset_id"])
        return respond(request, render_session(doc, (offerset or {}).get("request") or {}, base))

    @r.post("/sessions")
    async def direct_execution(request: Request, user: str = Depends(current_user)) -> Response:
        _, broker, base = parts(request)
        doc, early = await propose(request, user, direct=True)
        if early is not None:
            return early
        if doc is None:
            return fail(request, 503, "the planner did not answer in time")
        sessions = await broker.sessions_of(doc["_id"])
        if doc["result"] != "YES" or not sessions:
            failed = {
                "kind": kinds.SIMPLE_SESSION,
                "phase": "FAILED",
                "meta": {"messages": render_offerset(doc, [], base)["meta"].get("messages", [])},
            }
            return respond(request, failed, 400)
        session = sessions[0]
        body = render_session(session, doc.get("request") or {}, base)
        return respond(request, body, 303, {"Location": f"{base}/sessions/{session['_id']}"})

    @r.post("/sessions/{session_id}")
    async def update_session(
        request: Request, session_id: str, user: str = Depends(current_user)
    ) -> Response:
        gateway, broker, base = parts(request)
        try:
            value = parse_update(await read(request))
        except RequestError as exc:
            return fail(request, 400, str(exc))
        doc = await broker.session(user, session_id)
        if doc is None:
            return fail(request, 404, f"no session {session_id}")
        phase = session_phase(doc)
        if doc["offer_state"] == "OFFERED" and as_utc(doc["expires_at"]) <= utcnow():
            return fail(request, 410, f"the offer expired at {as_utc(doc['expires_at']).isoformat()}")
        if phase == "EXPIRED":
            return fail(request, 410, "the offer has expired")
        legal = {"OFFERED": DECISIONS}.get(
            phase, ("CANCELLED",) if phase in ("ACCEPTED", "WAITING", "PREPARING", "RUNNING") else ()
        )
        if value not in legal:
            return fail(request, 409, f"a session in phase {phase} cannot become {value}")
        asked_at = utcnow() - timedelta(milliseconds=1)
        await broker.decide(doc, value)
        await gateway.relay.flush(broker.sessions, session_id)

        async def settled() -> dict[str, Any] | None:
            current = await broker.session(user, session_id)
            if current is None:
                return None
            refusal = current.get("refusal")
            if refusal and as_utc(refusal["at"]) >= asked_at:
                return current
            if value == "CANCELLED" and current["offer_state"] == "ACCEPTED":
                return current if current.get("job_state") in TERMINAL_STATES else None
            return current if current["offer_state"] == value else None

        current = await broker.wait(settled, ANSWER_TIMEOUT_S) or await broker.session(user, session_id)
        assert current is not None
        refusal = current.get("refusal")
        if refusal and as_utc(refusal["at"]) >= asked_at:
            return fail(request, 410 if refusal["state"] == "EXPIRED" else 409, refusal["reason"])
        offerset = await broker.offerset(user, current["offerset_id"])
        return respond(request, render_session(current, (offerset or {}).get("request") or {}, base))

    return r


def parse_update(body: Any) -> str:
    """A bare ``uri:enum-value-update`` on ``phase`` (or the legacy body wrapped in ``update:``)."""
    if isinstance(body, dict) and isinstance(body.get("update"), dict):
        body = body["update"]
    if not isinstance(body, dict):
        raise RequestError("the update must be an object")
    kind = body.get("kind") or body.get("type")
    if kind != kinds.ENUM_UPDATE:
        raise RequestError(f"unsupported update kind {kind!r}; use {kinds.ENUM_UPDATE}")
    if body.get("path") not in ("phase", "/phase"):
        raise RequestError(f"unsupported update path {body.get('path')!r}; only phase can be updated")
    value = body.get("value")
    if value not in DECISIONS:
        raise RequestError(f"phase can be set to {', '.join(DECISIONS)}, not {value!r}")
    return str(value)
