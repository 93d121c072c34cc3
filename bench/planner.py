"""bench/planner: how fast the planner answers "can I run this, and when?" under a full calendar.

    .venv/bin/python bench/planner.py [--live 10000] [--proposals 400] [--concurrency 8]

Seeds ``--live`` bookings (running or accepted jobs) spread over the next week on three platforms,
then sends ``--proposals`` TaskProposed events (ExecutionBroker style: the planner computes offers on
every platform, books them and publishes OfferMade) with ``--concurrency`` in flight, and prints
offers/s and the proposal→offers latency p50/p99. The planner runs in this process on the in-memory
bus and store, so the figures are the planner's own cost (calendar search, compare-and-swap
bookings, outbox), without RabbitMQ or MongoDB round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from cirasa.cli.runtime import build_service
from cirasa.common.bus import MemoryBroker, MemoryBus
from cirasa.common.events import OfferMade, ResourceRequest, TaskProposed, utcnow
from cirasa.common.logs import configure_logging
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.planner.calendar import Booking
from cirasa.planner.ledger import stored_bookings
from cirasa.planner.service import Planner

PLATFORMS = [
    PlatformConfig(name="hpc", backend="local", cores=1024, memory_gib=4096, max_duration_s=7 * 86400),
    PlatformConfig(name="cloud", backend="local", cores=512, memory_gib=2048, max_duration_s=2 * 86400),
    PlatformConfig(name="local", backend="local", cores=256, memory_gib=1024, max_duration_s=86400),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def seed(planner: Planner, live: int, rng: random.Random) -> None:
    """``live`` bookings committed as one change per platform (as a restore would write them)."""
    now = utcnow()
    per_platform: dict[str, list[Booking]] = {p.name: [] for p in PLATFORMS}
    for i in range(live):
        platform = PLATFORMS[i % len(PLATFORMS)]
        start = now + timedelta(minutes=rng.uniform(-60, 7 * 24 * 60))
        hours = rng.uniform(0.2, 6)
        booking = Booking(
            f"seed-{i}",
            rng.randint(1, 4),
            rng.randint(1, 8) * 1024,
            start,
            start + timedelta(hours=hours),
            "job",
            f"seed-{i}",
        )
        per_platform[platform.name].append(booking)
    for name, bookings in per_platform.items():
        await planner.capacity.restore(name, bookings)


async def run(args: argparse.Namespace) -> dict[str, float]:
    configure_logging("WARNING", json=False)
    work = Path(tempfile.mkdtemp(prefix="cirasa-bench-planner-"))
    settings = Settings(platforms=PLATFORMS, data_dir=work / "data", jobs_dir=work / "jobs")
    broker = MemoryBroker()
    planner = build_service("planner", settings, broker)
    assert isinstance(planner, Planner)
    await planner.start()
    await seed(planner, args.live, random.Random(1))
    answered: dict[str, float] = {}
    offers_seen = 0

    async def on_offer(ev: OfferMade) -> None:
        nonlocal offers_seen
        offers_seen += 1
        answered.setdefault(ev.correlation_id, time.perf_counter())

    tap = MemoryBus("bench", broker, settings.exchange)
    tap.subscribe(OfferMade, on_offer)
    await tap.start()
    rng = random.Random(2)
    sent: dict[str, float] = {}
    queue: asyncio.Queue[TaskProposed] = asyncio.Queue()
    for _ in range(args.proposals):
        cores = rng.randint(1, 16)
        queue.put_nowait(
            TaskProposed(
                correlation_id=uuid.uuid4().hex,
                app="sleep",
                auto_accept=False,
                resources=ResourceRequest(
                    min_cores=cores,
                    max_cores=cores * 2,
                    min_memory_gib=2,
                    max_memory_gib=8,
                    duration_s=rng.randint(600, 4 * 3600),
                ),
                start_after=utcnow() + timedelta(minutes=rng.uniform(0, 600)),
            )
        )

    async def sender() -> None:
        while not queue.empty():
            ev = queue.get_nowait()
            sent[ev.correlation_id] = time.perf_counter()
            await planner.bus.publish(ev)  # routed to the planner's own queue
            while ev.correlation_id not in answered:
                await asyncio.sleep(0.001)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(args.concurrency)))
    wall = time.perf_counter() - started
    await tap.stop()
    await planner.stop()
    latencies = [answered[k] - t for k, t in sent.items() if k in answered]
    bookings = sum([len(await stored_bookings(planner.db, p.name)) for p in PLATFORMS])
    return {
        "live_bookings_at_start": args.live,
        "bookings_at_end": bookings,
        "proposals": args.proposals,
        "offers": offers_seen,
        "proposals_per_s": len(latencies) / wall,
        "offers_per_s": offers_seen / wall,
        "latency_p50_ms": pct(latencies, 50) * 1000,
        "latency_p99_ms": pct(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--live", type=int, default=10_000, help="bookings in the calendars before the run")
    parser.add_argument("--proposals", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"bench/planner: {figures['live_bookings_at_start']} live bookings over 3 platforms, "
        f"{figures['proposals']} proposals, {args.concurrency} in flight"
    )
    print(
        f"  offers made             {figures['offers']:>8}   (bookings at the end: "
        f"{figures['bookings_at_end']})"
    )
    print(f"  proposals answered/s    {figures['proposals_per_s']:>8.1f}")
    print(f"  offers/s                {figures['offers_per_s']:>8.1f}")
    print(f"  latency p50/p99         {figures['latency_p50_ms']:>8.1f} / {figures['latency_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
