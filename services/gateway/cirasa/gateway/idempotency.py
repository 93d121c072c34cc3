"""``Idempotency-Key``: a retried submission gets what the first one made, never a second job.

The first valid request with a key stores a small document whose ``_id`` is made of the user and the
key, naming the id the job (or offer set) is created under. Inserting it is the claim: of two concurrent
retries only one insert succeeds, and the other reads the id back; the job itself is then inserted
under that id, so even a twin that gets past the claim cannot make a second one. A crash between the
two inserts is repaired by the retry, which creates the job under the same id. Keys expire after a
day (TTL index); the same key with another body is refused with 422.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from pydantic import Field
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from cirasa.common.events import new_id, utcnow
from cirasa.common.store import Database
from cirasa.common.store.documents import Documents
from cirasa.gateway.documents import GatewayDocument
from cirasa.gateway.errors import BadRequest, Unprocessable

HEADER = "Idempotency-Key"
IDEMPOTENCY = "idempotency"
KEY_TTL = timedelta(days=1)
MAX_KEY_LENGTH = 255
INDEXES: dict[str, Sequence[IndexModel]] = {
    IDEMPOTENCY: [IndexModel([("created_at", ASCENDING)], expireAfterSeconds=int(KEY_TTL.total_seconds()))]
}


class IdempotencyKey(GatewayDocument):
    """A key a user sent, the request it came with (as a digest) and what that request created."""

    id: str = Field(alias="_id")
    user: str
    key: str
    route: str
    fingerprint: str
    target: str
    created_at: datetime


def key_of(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (None without one); 400 when it cannot be one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def fingerprint(route: str, body: Any) -> str:
    canonical = json.dumps([route, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Idempotency:
    def __init__(self, db: Database) -> None:
        self.keys = Documents(db[IDEMPOTENCY], IdempotencyKey)

    async def lookup(self, key: str | None, user: str, route: str, body: Any) -> str | None:
        """The id the first request with this key created under (None: no such request).

        Raises :class:`Unprocessable` when the key was used with another request."""
        if key is None:
            return None
        first = await self.keys.get(_doc_id(user, key))
        if first is None:
            return None
        if first.fingerprint != fingerprint(route, body):
            raise Unprocessable(
                f"{HEADER} {key!r} was already used with a different request (or on another "
                f"endpoint) within the last day; use a new key for a new request"
            )
        return first.target

    async def target_for(self, key: str | None, user: str, route: str, body: Any) -> str:
        """The id to create under: a new one without a key, else the first request's with this key
        (claimed now when this is the first). Call it once the request is known to be valid, so a
        refused request does not hold its key."""
        if key is None:
            return new_id()
        claim = IdempotencyKey(
            id=_doc_id(user, key),
            user=user,
            key=key,
            route=route,
            fingerprint=fingerprint(route, body),
            target=new_id(),
            created_at=utcnow(),
        )
        for _ in range(3):  # a first claim may expire between our insert and our read
            try:
                await self.keys.insert(claim)
                return claim.target
            except DuplicateKeyError:
                target = await self.lookup(key, user, route, body)
            if target is not None:
                return target
        raise DuplicateKeyError(f"{HEADER} {key!r} could not be claimed")


def _doc_id(user: str, key: str) -> str:
    return hashlib.sha256(json.dumps([user, key]).encode()).hexdigest()
