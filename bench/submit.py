"""bench/submit: the submit path end to end, five services as processes on the real RabbitMQ.

    .venv/bin/python bench/submit.py [--jobs 300] [--concurrency 16] [--cores 8]

Uploads one image, fires ``--jobs`` caesar ``POST /job`` requests for the diagnostic ``sleep`` app
(0 s) with ``--concurrency`` in flight, and prints submissions/s, submit latency p50/p99 and
submit→SUCCESS p50/p99. SUCCESS is seen on the bus (a tap queue on the exchange), so the timing does
not depend on status polling. The load generator is Python (httpx), which costs ~2-6 ms of CPU per
request on this 2-core box and shares it with RabbitMQ and the five services: the figures are for
the whole stack on one machine, not for the gateway alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import httpx

from cirasa.cli.launcher import ProcessStack, free_port, stack_env
from cirasa.finders.imaging import synthetic_image

API = "/caesar/api/v1.0"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, stack: ProcessStack, exchange: str, image: Path) -> dict[str, float]:
    done: dict[str, float] = {}
    states: dict[str, str] = {}
    connection = await aio_pika.connect(args.amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(await channel.get_exchange(exchange), routing_key="job.state_changed")

    async def on_state(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            event = json.loads(message.body)
            if event["state"] not in ("PENDING", "RUNNING"):
                done.setdefault(event["job_id"], time.perf_counter())
                states[event["job_id"]] = event["state"]

    await queue.consume(on_state)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=stack.gateway_url + API, timeout=60, limits=limits) as http:
        up = await http.post("/upload", files={"file": (image.name, image.read_bytes())})
        file_id = up.json()["uuid"]
        body = {"app": "sleep", "data_inputs": file_id, "job_inputs": {"seconds": 0}, "tag": "bench"}
        submitted: dict[str, float] = {}
        latencies: list[float] = []
        errors = 0
        todo = iter(range(args.jobs))

        async def worker() -> None:
            nonlocal errors
            for _ in todo:
                t0 = time.perf_counter()
                r = await http.post("/job", json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code == 202:
                    submitted[r.json()["job_id"]] = t0
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        submit_wall = time.perf_counter() - started
        deadline = time.monotonic() + args.timeout
        while len([j for j in submitted if j in done]) < len(submitted) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        all_done_wall = time.perf_counter() - started
    await connection.close()
    e2e = [done[j] - t for j, t in submitted.items() if j in done]
    ok = sum(1 for j in submitted if states.get(j) == "SUCCESS")
    return {
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "accepted_202": len(submitted),
        "errors": errors,
        "succeeded": ok,
        "finished": len(e2e),
        "unfinished": len(submitted) - len(e2e),
        "submissions_per_s": len(submitted) / submit_wall,
        "submit_p50_ms": pct(latencies, 50) * 1000,
        "submit_p99_ms": pct(latencies, 99) * 1000,
        "submit_to_success_p50_ms": pct(e2e, 50) * 1000,
        "submit_to_success_p99_ms": pct(e2e, 99) * 1000,
        "jobs_completed_per_s": len(e2e) / all_done_wall,
        "submit_mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cores", type=int, default=8, help="cores of the local platform (1-core jobs)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every job to finish")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("CIRASA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="the platform refuses the app: every job ends ABORTED by the planner, so no process runs and "
        "the figures are the submit path's alone (gateway, broker, planner, accounting)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cirasa-bench-"))
    exchange = f"bench.{uuid.uuid4().hex[:8]}"
    config = workdir / "config.yaml"
    apps = ", apps: [sep]" if args.no_run else ""
    config.write_text(
        "platforms:\n"
        f"  - {{name: local, backend: local, cores: {args.cores}, memory_gib: 64, "
        f"max_duration_s: 3600{apps}}}\n"
    )
    extra = {
        "CIRASA_CONFIG": str(config),
        "CIRASA_LOG_LEVEL": "WARNING",
        "CIRASA_MONITOR__POLL_INTERVAL_S": "0.1",
    }
    env = stack_env(workdir, exchange, args.amqp_url, extra)
    image = workdir / "bench.fits"
    synthetic_image(image, size=128, n_sources=4, seed=1)
    print(f"five services on {args.amqp_url}, exchange {exchange}, logs in {workdir}", file=sys.stderr)
    with ProcessStack(workdir, env, gateway_port=free_port()) as stack:
        stack.start()
        figures = asyncio.run(run(args, stack, exchange, image))
    asyncio.run(_cleanup(args.amqp_url, exchange))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"bench/submit: {figures['jobs']} jobs of app 'sleep' (0 s), {figures['concurrency']} in flight, "
        f"platform {args.cores} cores"
    )
    print(f"  accepted (202)          {figures['accepted_202']:>8}   errors {figures['errors']}")
    print(f"  submissions/s           {figures['submissions_per_s']:>8.1f}")
    print(f"  submit latency p50/p99  {figures['submit_p50_ms']:>8.1f} / {figures['submit_p99_ms']:.1f} ms")
    final = "ABORTED" if args.no_run else "SUCCESS"
    p50, p99 = figures["submit_to_success_p50_ms"], figures["submit_to_success_p99_ms"]
    print(f"  submit→{final} p50/p99  {p50:>8.0f} / {p99:.0f} ms")
    print(
        f"  jobs completed/s        {figures['jobs_completed_per_s']:>8.1f}   "
        f"succeeded {figures['succeeded']}, unfinished {figures['unfinished']}"
    )


async def _cleanup(amqp_url: str, exchange: str) -> None:
    from cirasa.cli.runtime import SERVICES
    from cirasa.common.events import EVENT_TYPES

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for service in SERVICES:
            for cls in EVENT_TYPES.values():
                await channel.queue_delete(f"{exchange}.{service}.{cls.routing_key}")
        await channel.queue_delete(f"{exchange}.dead-letter")
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(f"{exchange}.dlx")


if __name__ == "__main__":
    main()
