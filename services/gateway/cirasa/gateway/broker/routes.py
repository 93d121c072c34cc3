"""IVOA ExecutionBroker v1.0 endpoints: ``/offersets`` and ``/sessions``, JSON and YAML in and out.

Errors are real: 400 bad input, 404 unknown, 409 an illegal phase change, 410 an expired offer — never
a silent 200 with the session unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pymongo.errors import DuplicateKeyError

from cirasa.backends.staging import StagingPolicy, StagingRefused
from cirasa.common.events import TERMINAL_STATES, DataSource, as_utc, utcnow
from cirasa.gateway import idempotency, openapi
from cirasa.gateway.broker import kinds
from cirasa.gateway.broker.render import error_body, render_offerset, render_session, strip_nulls
from cirasa.gateway.broker.request import MAX_BODY, ParsedRequest, load_body, parse_request
from cirasa.gateway.broker.state import session_phase
from cirasa.gateway.dependencies import GatewayDep, UserDep, read_bounded
from cirasa.gateway.documents import OfferSet, Session, StoredFile
from cirasa.gateway.errors import BadRequest, Conflict, GatewayError, Gone, NotFound
from cirasa.gateway.service import Gateway

PATHS = ("/offersets", "/sessions")
ANSWER_TIMEOUT_S = 10.0
DECISIONS = ("ACCEPTED", "REJECTED", "CANCELLED")
# Who may still be cancelled once accepted.
CANCELLABLE = ("ACCEPTED", "WAITING", "PREPARING", "RUNNING")

router = APIRouter(tags=["IVOA ExecutionBroker"])


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


def error_response(request: Request, exc: GatewayError) -> Response:
    """The ExecutionBroker error document, in the form the client accepts."""
    return respond(request, error_body(exc.status_code, exc.message), exc.status_code, exc.headers or None)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def read_body(request: Request) -> Any:
    raw = await read_bounded(request, MAX_BODY)
    if raw is None:
        raise BadRequest(f"request body over {MAX_BODY // 1024} KiB")
    return load_body(raw, request.headers.get("content-type"))


async def propose(request: Request, gateway: Gateway, user: str, direct: bool) -> OfferSet:
    """Record the request as an offer set and wait for the planner's answer: the offer set as it is
    then (still PENDING when the planner did not answer in time). With an ``Idempotency-Key``, a
    retry finds the offer set the first request made."""
    body = await read_body(request)
    key = idempotency.key_of(request)
    route = f"broker:{'sessions' if direct else 'offersets'}"
    broker = gateway.broker
    made_id = await gateway.idempotency.lookup(key, user, route, body)
    offerset = await broker.offerset(user, made_id) if made_id else None
    if offerset is None:
        parsed, files = await parse_proposal(gateway, user, body)
        offerset_id = await gateway.idempotency.target_for(key, user, route, body)
        try:
            offerset = await broker.propose(user, parsed, files, body, direct, offerset_id)
            await gateway.relay.flush(broker.offersets.raw, offerset.id, offerset.outbox)  # or the sweep
        except DuplicateKeyError:  # a concurrent retry with the same key made it
            offerset = await broker.offerset(user, offerset_id)
            if offerset is None:
                raise
    offerset_id = offerset.id

    async def answered() -> OfferSet | None:
        current = await broker.offerset(user, offerset_id)
        return current if current is not None and is_answered(current) else None

    answer: OfferSet | None = await broker.wait(answered, ANSWER_TIMEOUT_S)
    return answer or await broker.offerset(user, offerset_id) or offerset


def is_answered(offerset: OfferSet) -> bool:
    """Whether the planner's whole answer is in (a YES comes as ``set_size`` offers)."""
    if offerset.result == "PENDING":
        return False
    return offerset.result != "YES" or len(offerset.offer_ids) >= (offerset.set_size or 1)


async def parse_proposal(gateway: Gateway, user: str, body: Any) -> tuple[ParsedRequest, list[StoredFile]]:
    """The request checked against the platforms' limits, and the input files it names."""
    platforms = gateway.settings.platforms
    limits = (
        max(platforms, key=lambda p: p.cores).cores,
        max(p.memory_gib for p in platforms),
        max(p.max_duration_s for p in platforms),
    )
    parsed = parse_request(body, limits)
    parsed.no += refused_sources(parsed.staging, gateway.staging_policy)
    files = []
    for file_id in parsed.input_ids:
        file = await gateway.find_file(user, file_id)
        if file is None:
            parsed.no.append(f"input file {file_id} not found")
        else:
            files.append(file)
    fetched = any(s.role == "executable" for s in parsed.staging)  # a notebook by URL
    if parsed.app and not parsed.no and not fetched and len(files) != 1:
        parsed.no.append(f"app {parsed.app} takes exactly one input file id, got {len(parsed.input_ids)}")
    return parsed, files


def refused_sources(sources: list[DataSource], policy: StagingPolicy) -> list[str]:
    """Why the platform would refuse to fetch some of ``sources``: said in the NO, not at PREPARING."""
    reasons = []
    for source in sources:
        for url in filter(None, (source.endpoint, source.location)):
            try:
                policy.check_url(url)
            except StagingRefused as exc:
                reasons.append(f"{source.role} {source.name!r}: {exc}")
                break
    return reasons


def still_pending(request: Request, offerset: OfferSet) -> Response:
    """202: the proposal is stored and will be answered; the client follows the offer set."""
    base = base_url(request)
    body = render_offerset(offerset, [], base)
    return respond(request, body, 202, {"Location": f"{base}/offersets/{offerset.id}"})


async def request_of(gateway: Gateway, session: Session) -> dict[str, Any]:
    """The ExecutionRequest the session's offer set was made for (rendered into the session)."""
    offerset = await gateway.broker.offerset(session.user, session.offerset_id)
    request: dict[str, Any] = (offerset.request if offerset else None) or {}
    return request


EXECUTION_REQUEST = openapi.request_body(openapi.EXECUTION_REQUEST, *openapi.JSON_OR_YAML)


@router.post("/offersets", status_code=303, openapi_extra=EXECUTION_REQUEST)
async def post_offerset(request: Request, gateway: GatewayDep, user: UserDep) -> Response:
    offerset = await propose(request, gateway, user, direct=False)
    if not is_answered(offerset):
        return still_pending(request, offerset)
    base = base_url(request)
    body = render_offerset(offerset, await gateway.broker.sessions_of(offerset.id), base)
    return respond(request, body, 303, {"Location": f"{base}/offersets/{offerset.id}"})


@router.get("/offersets/{offerset_id}")
async def get_offerset(request: Request, offerset_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    offerset = await gateway.broker.offerset(user, offerset_id)
    if offerset is None:
        raise NotFound(f"no offer set {offerset_id}")
    sessions = await gateway.broker.sessions_of(offerset_id)
    return respond(request, render_offerset(offerset, sessions, base_url(request)))


@router.get("/sessions/{session_id}")
async def get_session(request: Request, session_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    session = await gateway.broker.session(user, session_id)
    if session is None:
        raise NotFound(f"no session {session_id}")
    return respond(request, render_session(session, await request_of(gateway, session), base_url(request)))


@router.post("/sessions", openapi_extra=EXECUTION_REQUEST)
async def direct_execution(request: Request, gateway: GatewayDep, user: UserDep) -> Response:
    offerset = await propose(request, gateway, user, direct=True)
    if not is_answered(offerset):
        return still_pending(request, offerset)
    base = base_url(request)
    sessions = await gateway.broker.sessions_of(offerset.id)
    if offerset.result != "YES" or not sessions:
        failed = {
            "kind": kinds.SIMPLE_SESSION,
            "phase": "FAILED",
            "meta": {"messages": render_offerset(offerset, [], base)["meta"].get("messages", [])},
        }
        return respond(request, failed, 400)
    session = sessions[0]
    body = render_session(session, offerset.request or {}, base)
    return respond(request, body, 303, {"Location": f"{base}/sessions/{session.id}"})


@router.post(
    "/sessions/{session_id}",
    openapi_extra=openapi.request_body(openapi.SESSION_UPDATE, *openapi.JSON_OR_YAML),
)
async def update_session(request: Request, session_id: str, gateway: GatewayDep, user: UserDep) -> Response:
    value = parse_update(await read_body(request))
    session = await gateway.broker.session(user, session_id)
    if session is None:
        raise NotFound(f"no session {session_id}")
    check_decision(session, value)
    asked_at = utcnow() - timedelta(milliseconds=1)
    written = await gateway.broker.decide(session, value)
    await gateway.relay.flush(gateway.broker.sessions.raw, session_id, written)
    current = await settled(gateway, session, value, asked_at)
    return respond(request, render_session(current, await request_of(gateway, current), base_url(request)))


def check_decision(session: Session, value: str) -> None:
    """Refuse a phase update the session's phase does not allow: 410 expired, 409 otherwise."""
    phase = session_phase(session)
    if session.offer_state == "OFFERED" and session.expires_at and as_utc(session.expires_at) <= utcnow():
        raise Gone(f"the offer expired at {as_utc(session.expires_at).isoformat()}")
    if phase == "EXPIRED":
        raise Gone("the offer has expired")
    legal = {"OFFERED": DECISIONS}.get(phase, ("CANCELLED",) if phase in CANCELLABLE else ())
    if value not in legal:
        raise Conflict(f"a session in phase {phase} cannot become {value}")


async def settled(gateway: Gateway, session: Session, value: str, asked_at: datetime) -> Session:
    """The session once the planner has acted on ``value`` (or as it is after the timeout).

    A refusal recorded since ``asked_at`` is raised: 410 when the offer expired, 409 otherwise.
    """
    broker = gateway.broker

    def refused(current: Session) -> bool:
        return current.refusal is not None and as_utc(current.refusal.at) >= asked_at

    async def probe() -> Session | None:
        current = await broker.session(session.user, session.id)
        if current is None:
            return None
        if refused(current):
            return current
        if value == "CANCELLED" and current.offer_state == "ACCEPTED":
            return current if current.job_state in TERMINAL_STATES else None
        return current if current.offer_state == value else None

    current: Session | None = await broker.wait(probe, ANSWER_TIMEOUT_S) or await broker.session(
        session.user, session.id
    )
    assert current is not None
    if current.refusal is not None and refused(current):
        error = Gone if current.refusal.state == "EXPIRED" else Conflict
        raise error(current.refusal.reason)
    return current


def parse_update(body: Any) -> str:
    """A bare ``uri:enum-value-update`` on ``phase`` (or the legacy body wrapped in ``update:``)."""
    if isinstance(body, dict) and isinstance(body.get("update"), dict):
        body = body["update"]
    if not isinstance(body, dict):
        raise BadRequest("the update must be an object")
    kind = body.get("kind") or body.get("type")
    if kind != kinds.ENUM_UPDATE:
        raise BadRequest(f"unsupported update kind {kind!r}; use {kinds.ENUM_UPDATE}")
    if body.get("path") not in ("phase", "/phase"):
        raise BadRequest(f"unsupported update path {body.get('path')!r}; only phase can be updated")
    value = body.get("value")
    if value not in DECISIONS:
        raise BadRequest(f"phase can be set to {', '.join(DECISIONS)}, not {value!r}")
    return str(value)
