"""A seeded workload: caesar submissions, ExecutionBroker offer sets (accepted, rejected, left to
expire, cancelled after acceptance), cancels, failing and overrunning jobs, from several users.

The operations are drawn up front from the workload's own random stream, so the same seed asks the
same of the system whatever the faults do. Each runs as a client request would: through the
gateway service's methods, in a task a gateway crash aborts (the client then sees an error).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirasa.common.events import as_utc, new_id, utcnow
from cirasa.finders.registry import get_app
from cirasa.gateway.broker import kinds
from cirasa.gateway.broker.request import parse_request
from cirasa.gateway.broker.routes import CANCELLABLE
from cirasa.gateway.broker.state import session_phase
from cirasa.gateway.documents import OfferSet, Session, StoredFile
from cirasa.gateway.service import Gateway, NewJob
from cirasa.gateway.uploads import ReceivedFile

if TYPE_CHECKING:
    from cirasa.cli.sim.runner import World

USERS = ("alice", "bob", "carol")
FITS_HEAD = b"SIMPLE  =                    T" + b" " * 50


@dataclass(frozen=True)
class Op:
    at: float  # simulated seconds after the start
    kind: str  # submit, offerset, cancel
    user: str
    seconds: float = 1.0
    exit_code: int = 0
    walltime: int = 60
    cores: tuple[int, int] = (1, 1)
    decision: str = "ACCEPTED"  # ACCEPTED, REJECTED, or NONE (left to expire)
    decide_after: float = 1.0
    cancel_after: float | None = None
    direct: bool = False
    start_in: float | None = None  # an offer's requested start, seconds from now


@dataclass
class Client:
    """What the clients were told: the jobs they were given ids for, and their files."""

    jobs: dict[str, str] = field(default_factory=dict)  # job id -> user
    files: dict[str, StoredFile] = field(default_factory=dict)
    errors: int = 0


def draw(seed: int, size: int) -> list[Op]:
    rng = random.Random(f"{seed}:workload")
    ops: list[Op] = []
    for _ in range(size):
        at = rng.uniform(0, 40)
        user = rng.choice(USERS)
        overrun = rng.random() < 0.15
        walltime = rng.randint(5, 40)
        seconds = walltime + rng.uniform(1, 30) if overrun else rng.uniform(0.5, walltime * 0.9)
        common: dict[str, Any] = {
            "seconds": round(seconds, 2),
            "exit_code": 1 if rng.random() < 0.2 else 0,
            "walltime": walltime,
            "cancel_after": rng.uniform(0, 20) if rng.random() < 0.2 else None,
        }
        if rng.random() < 0.55:
            ops.append(Op(at, "submit", user, **common))
            continue
        low = rng.randint(1, 2)
        ops.append(
            Op(
                at,
                "offerset",
                user,
                cores=(low, low + rng.randint(0, 2)),
                decision=rng.choice(("ACCEPTED", "ACCEPTED", "REJECTED", "NONE")),
                decide_after=rng.uniform(0, 12),
                direct=rng.random() < 0.2,
                start_in=rng.uniform(1, 30) if rng.random() < 0.3 else None,
                **common,
            )
        )
    return sorted(ops, key=lambda op: op.at)


class Workload:
    def __init__(self, world: World, ops: list[Op]) -> None:
        self.world = world
        self.ops = ops
        self.client = Client()
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def gateway(self) -> Gateway:
        gateway = self.world.services["gateway"]
        assert isinstance(gateway, Gateway)
        return gateway

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for op in self.ops:
            await asyncio.sleep(max(0.0, start + op.at - loop.time()))
            self.tasks.append(asyncio.create_task(self._attempt(op)))
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def request(self, call: Any) -> Any:
        """One client request to the gateway: aborted (an error for the client) if the gateway crashes."""
        while "gateway" in self.world.down:  # noqa: ASYNC110 (the client retries its connection)
            await asyncio.sleep(1.0)
        task = asyncio.ensure_future(call)
        self.world.requests.add(task)
        try:
            return await task
        finally:
            self.world.requests.discard(task)

    async def _attempt(self, op: Op) -> None:
        try:
            if op.kind == "submit":
                await self._submit(op)
            else:
                await self._offerset(op)
        except (asyncio.CancelledError, Exception):  # the client saw an error (5xx, reset)
            self.client.errors += 1
            if asyncio.current_task() and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise

    async def _file(self, user: str) -> StoredFile:
        if user not in self.client.files:
            tmp = Path(tempfile.mkdtemp(dir=self.world.settings.data_dir.parent)) / "in.fits"
            tmp.write_bytes(FITS_HEAD)
            received = ReceivedFile(tmp, "in.fits", len(FITS_HEAD), "")
            self.client.files[user] = await self.request(self.gateway.register_file(user, received, "fits"))
        return self.client.files[user]

    async def _submit(self, op: Op) -> None:
        app = get_app("sleep")
        assert app is not None
        file = await self._file(op.user)
        options = {"seconds": op.seconds, "exit-code": op.exit_code}
        new = NewJob(app, options, options, file, "", op.walltime)
        job = await self.request(self.gateway.submit_job(op.user, new))
        self.client.jobs[job.id] = op.user
        if op.cancel_after is not None:
            await asyncio.sleep(op.cancel_after)
            current = await self.request(self.gateway.find_job(op.user, job.id))
            if current is not None:
                await self.request(self.gateway.request_cancel(op.user, current))

    def _body(self, op: Op, file: StoredFile) -> dict[str, Any]:
        body: dict[str, Any] = {
            "executable": {
                "kind": kinds.CIRASA_APP,
                "app": "sleep",
                "options": {"seconds": op.seconds, "exit-code": op.exit_code},
                "inputs": [file.id],
            },
            "compute": {"cores": {"min": op.cores[0], "max": op.cores[1]}, "memory": {"min": 1, "max": 1}},
            "schedule": {"requested": {"duration": f"PT{op.walltime}S"}},
        }
        if op.start_in is not None:
            begin = utcnow() + timedelta(seconds=op.start_in)
            end = begin + timedelta(seconds=60)
            body["schedule"]["requested"]["start"] = f"{begin.isoformat()}/{end.isoformat()}"
        return body

    async def _propose(self, op: Op, file: StoredFile) -> OfferSet:
        gateway = self.gateway
        platforms = gateway.settings.platforms
        limits = (
            max(p.cores for p in platforms),
            max(p.memory_gib for p in platforms),
            max(p.max_duration_s for p in platforms),
        )
        body = self._body(op, file)
        parsed = parse_request(body, limits)
        offerset = await gateway.broker.propose(op.user, parsed, [file], body, op.direct, new_id())
        await gateway.relay.flush(gateway.broker.offersets.raw, offerset.id, offerset.outbox)
        return offerset

    async def _decide(self, session: Session, value: str) -> None:
        gateway = self.gateway
        written = await gateway.broker.decide(session, value)
        await gateway.relay.flush(gateway.broker.sessions.raw, session.id, written)

    async def _session(self, user: str, session_id: str, until: Any) -> Session | None:
        """The session once ``until`` holds for it (polled as a client would), or as it is after 10 s."""
        for _ in range(20):
            session = await self.request(self.gateway.broker.session(user, session_id))
            if session is not None and until(session):
                return session
            await asyncio.sleep(0.5)
        return None

    async def _offerset(self, op: Op) -> None:
        file = await self._file(op.user)
        offerset = await self.request(self._propose(op, file))
        if op.direct:
            self.client.jobs[offerset.id] = op.user  # its job id is the proposal's
            return
        await asyncio.sleep(op.decide_after)
        sessions = await self.request(self.gateway.broker.sessions_of(offerset.id))
        if not sessions or op.decision == "NONE":
            return
        session = sessions[int(op.seconds * 100) % len(sessions)]
        if session_phase(session) != "OFFERED" or (
            session.expires_at is not None and as_utc(session.expires_at) <= utcnow()
        ):
            return  # the gateway would answer 409 or 410
        await self.request(self._decide(session, op.decision))
        if op.decision != "ACCEPTED":
            return
        accepted = await self._session(op.user, session.id, lambda s: s.offer_state == "ACCEPTED")
        if accepted is None:
            return
        self.client.jobs[accepted.job_id or session.id] = op.user
        if op.cancel_after is not None:
            await asyncio.sleep(op.cancel_after)
            current = await self.request(self.gateway.broker.session(op.user, session.id))
            if current is not None and session_phase(current) in CANCELLABLE:
                await self.request(self._decide(current, "CANCELLED"))
