"""One schedule: the five services on simulated time with a seeded workload and seeded faults, then
a quiet spell (faults off) and the invariants. ``run_seed`` replays a seed exactly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cirasa.backends import factory
from cirasa.cli.runtime import SERVICES
from cirasa.cli.sim.backend import BackendWorld, SimBackend
from cirasa.cli.sim.bus import SimBroker, SimBus
from cirasa.cli.sim.clock import EPOCH, SimLoop, simulated
from cirasa.cli.sim.faults import KINDS, FaultPlan
from cirasa.cli.sim.store import FaultyDatabase, StoreWorld
from cirasa.cli.sim.workload import Workload, draw
from cirasa.common.service import Service
from cirasa.common.settings import MonitorSettings, PlatformConfig, Settings
from cirasa.common.store import Database, Inbox, database_name
from cirasa.common.store.memory import memory_client, reset_memory_store

DEFAULT_SIZE = 8  # workload operations per schedule
QUIESCE_LIMIT_S = 600.0  # simulated seconds the system gets to settle once faults are off


@dataclass
class Result:
    seed: int
    violations: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    jobs: int = 0
    sim_seconds: float = 0.0
    trace: str = ""  # a digest of what happened, to check that a seed replays exactly

    kinds: frozenset[str] = frozenset(KINDS)
    size: int = DEFAULT_SIZE

    @property
    def replay(self) -> str:
        """The one command line that replays this schedule."""
        line = f"cirasa sim --seed {self.seed}"
        if self.kinds != frozenset(KINDS):
            line += f" --faults {','.join(sorted(self.kinds)) or 'none'}"
        return line + (f" --size {self.size}" if self.size != DEFAULT_SIZE else "")


def sim_settings(seed: int, root: Path) -> Settings:
    rng = random.Random(f"{seed}:platforms")
    platforms = [
        PlatformConfig(
            name=f"p{i}",
            backend="local",
            cores=rng.choice((2, 3, 4)),
            memory_gib=8,
            max_duration_s=600,
            offer_ttl_s=rng.randint(3, 20),
        )
        for i in range(rng.choice((1, 1, 2)))
    ]
    return Settings(
        exchange="sim",
        mongodb_url=None,
        db_prefix="sim",
        data_dir=root / "data",
        jobs_dir=root / "jobs",
        outbox_sweep_s=2.0,
        platforms=platforms,
        monitor=MonitorSettings(
            poll_interval_s=1.0, reconcile_interval_s=5.0, start_timeout_s=60.0, submit_timeout_s=120.0
        ),
    )


class World:
    """The running system of one schedule: services, broker, store wrappers, backend and workload."""

    def __init__(self, seed: int, loop: SimLoop, root: Path, kinds: frozenset[str], size: int) -> None:
        self.seed = seed
        self.loop = loop
        self.settings = sim_settings(seed, root)
        self.faults = FaultPlan(seed, kinds)
        self.broker = SimBroker(self.faults)
        self.store = StoreWorld(self.faults, self.crash)
        self.backends = BackendWorld(loop.time, EPOCH, self.faults)
        self.services: dict[str, Service] = {}
        self.down: set[str] = set()
        self.requests: set[asyncio.Future[Any]] = set()
        self.restarts: set[asyncio.Task[None]] = set()
        self.workload = Workload(self, draw(seed, size))
        self.rng = random.Random(f"{seed}:restarts")
        self.result = Result(seed, kinds=kinds, size=size)

    def raw_db(self, name: str) -> Database:
        """A service's database without faults (what the invariants read)."""
        db: Database = memory_client()[database_name(self.settings, name)]
        return db

    def build(self, name: str) -> Service:
        db = cast(Database, FaultyDatabase(self.raw_db(name), name, self.store))
        bus = SimBus(name, self.broker, self.settings.exchange, Inbox(db))
        return SERVICES[name](self.settings, bus, db)

    async def start(self, name: str) -> None:
        """Start (or restart) a service; a start that fails is tried again, as an orchestrator would."""
        self.down.add(name)  # no crash strikes a service that is (re)starting
        while True:
            service = self.build(name)
            self.services[name] = service
            try:
                await service.start()
            except Exception:
                await service.stop()
                await asyncio.sleep(1.0)
                continue
            self.down.discard(name)
            return

    def crash(self, name: str) -> bool:
        """Crash ``name`` from one of its await points: its tasks are cancelled, and it restarts a
        little later. True when the calling task is one of those cancelled."""
        service = self.services.get(name)
        if name in self.down or service is None or not self.faults.strikes("crash"):
            return False
        self.down.add(name)
        task = asyncio.get_running_loop().create_task(self._crash_and_restart(name))
        self.restarts.add(task)
        task.add_done_callback(self.restarts.discard)
        doomed = {*service._tasks, *service.bus._tasks}  # type: ignore[attr-defined]
        if name == "gateway":
            doomed |= self.requests
        return asyncio.current_task() in doomed

    async def _crash_and_restart(self, name: str) -> None:
        if name == "gateway":
            for request in list(self.requests):
                request.cancel()
        await self.services[name].stop()
        await asyncio.sleep(self.rng.uniform(0.5, 15.0))
        await self.start(name)

    async def stop(self) -> None:
        for task in [*self.restarts, *self.workload.tasks]:
            task.cancel()
        await asyncio.gather(*self.restarts, *self.workload.tasks, return_exceptions=True)
        for service in reversed(list(self.services.values())):
            await service.stop()


async def _schedule(world: World) -> None:
    from cirasa.cli.sim.invariants import check, settled

    for name in SERVICES:
        await world.start(name)
    driver = asyncio.create_task(world.workload.run())
    await _run_until(driver, 120.0)
    world.faults.enabled = False
    while world.restarts:  # crashed services come back
        await asyncio.gather(*list(world.restarts), return_exceptions=True)
    deadline = world.loop.time() + QUIESCE_LIMIT_S
    while world.loop.time() < deadline and not await settled(world):  # noqa: ASYNC110 (a probe, not a flag)
        await asyncio.sleep(5.0)
    await asyncio.sleep(3.0)  # accounting publishes about once a second
    world.result.violations += await check(world)


async def _run_until(task: asyncio.Task[None], timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def run_seed(seed: int, kinds: frozenset[str] = frozenset(KINDS), size: int = DEFAULT_SIZE) -> Result:
    """Run one schedule from scratch and check it; the same arguments give the same run."""
    reset_memory_store()
    loop = SimLoop()
    saved = dict(factory.FACTORIES)
    with tempfile.TemporaryDirectory(prefix="cirasa-sim-") as tmp, simulated(loop, seed):
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "jobs").mkdir()
        world = World(seed, loop, root, kinds, size)
        factory.FACTORIES["local"] = lambda platform, settings: SimBackend(world.backends, platform.name)
        try:
            loop.run_until_complete(_guarded(world))
        finally:
            factory.FACTORIES.clear()
            factory.FACTORIES.update(saved)
            loop.close()
            reset_memory_store()
    result = world.result
    result.trace = _digest(world)
    result.faults = Counter(world.faults.injected)
    result.sim_seconds = loop.time()
    result.jobs = len(world.backends.runs)
    return result


def _digest(world: World) -> str:
    """What was published, when, in order, and the faults: equal digests mean the same run."""
    h = hashlib.sha256()
    for ev in world.broker.published:
        h.update(f"{ev.type}|{ev.correlation_id}|{ev.event_id}|{ev.occurred_at.isoformat()}\n".encode())
    h.update(repr(sorted(world.faults.injected.items())).encode())
    return h.hexdigest()[:16]


async def _guarded(world: World) -> None:
    try:
        await _schedule(world)
    except Exception as exc:  # the harness itself must not hide a seed
        world.result.violations.append(f"harness: {exc!r}")
    finally:
        await world.stop()


def run_many(
    seeds: list[int], kinds: frozenset[str] = frozenset(KINDS), size: int = DEFAULT_SIZE, workers: int = 1
) -> list[Result]:
    """Run the seeds, in ``workers`` forked processes when more than one (each run is independent)."""
    if workers <= 1 or len(seeds) < 2:
        return [run_seed(seed, kinds, size) for seed in seeds]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(run_seed, seeds, [kinds] * len(seeds), [size] * len(seeds), chunksize=8))
