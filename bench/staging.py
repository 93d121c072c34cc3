"""bench/staging: several jobs that need the same dataset, through the platform's shared cache, next
to the same jobs each needing its own copy (what staging per job costs without sharing).

    .venv/bin/python bench/staging.py [--jobs 8] [--mb 64] [--mbps 100] [--cores 4]

Starts the five services in this process (in-memory bus and store, a local platform of ``--cores``)
and an HTTP origin on 127.0.0.1 that sends each response at ``--mbps`` MB/s. Each round submits
``--jobs`` ExecutionBroker direct executions at once (a 0.1 s ``sleep`` app job and one data resource
of ``--mb`` MB): ``shared`` names one URL for all of them, ``own`` a distinct URL each (the same
bytes). Prints, per round: downloads the origin served, MB over the network, the cache's hits and
misses, and each job's time from submission to RUNNING (p50, max) and to COMPLETED (max).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY

from cirasa.cli.runtime import in_process
from cirasa.common.logs import configure_logging
from cirasa.common.settings import PlatformConfig, Settings
from cirasa.finders.imaging import synthetic_image
from cirasa.gateway.broker import kinds

DATA = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/data/simple-data-resource-1.0"
CHUNK = 256 * 1024


class ThrottledOrigin(ThreadingHTTPServer):
    """Serves ``body`` at any path, each response at ``rate`` bytes/s; counts what it sent."""

    def __init__(self, body: bytes, rate: float) -> None:
        super().__init__(("127.0.0.1", 0), _Paced)
        self.body, self.rate = body, rate
        self.downloads, self.sent = 0, 0
        self.lock = threading.Lock()


class _Paced(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        origin: ThrottledOrigin = self.server  # type: ignore[assignment]
        self.send_response(200)
        self.send_header("Content-Length", str(len(origin.body)))
        self.end_headers()
        started = time.monotonic()
        for offset in range(0, len(origin.body), CHUNK):
            self.wfile.write(origin.body[offset : offset + CHUNK])
            ahead = (offset + CHUNK) / origin.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        with origin.lock:
            origin.downloads += 1
            origin.sent += len(origin.body)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"platform": "local"}) or 0.0


async def session_of(client: httpx.AsyncClient, answer: httpx.Response) -> str:
    """The session a direct execution made: at once (303), or once the platform had room (202)."""
    if answer.status_code == 303:
        return str(answer.json()["meta"]["uuid"])
    while True:
        offers = (await client.get(answer.headers["location"])).json()
        if offers.get("offers"):
            return str(offers["offers"][0]["meta"]["uuid"])
        await asyncio.sleep(0.05)


async def follow(client: httpx.AsyncClient, session: str, t0: float) -> tuple[float, float]:
    """Seconds from ``t0`` to RUNNING (or later) and to the end."""
    running = None
    while True:
        phase = (await client.get(f"/sessions/{session}")).json()["phase"]
        now = time.monotonic() - t0
        if running is None and phase in ("RUNNING", "COMPLETED"):
            running = now
        if phase in ("COMPLETED", "FAILED", "CANCELLED"):
            if phase != "COMPLETED":
                raise RuntimeError(f"session {session} ended {phase}")
            return running if running is not None else now, now
        await asyncio.sleep(0.02)


async def one_round(
    client: httpx.AsyncClient, origin: ThrottledOrigin, file_id: str, jobs: int, shared: bool, tag: str
) -> dict[str, float]:
    base = f"http://127.0.0.1:{origin.server_address[1]}/{tag}"
    hits, misses = metric("cirasa_staging_cache_hits_total"), metric("cirasa_staging_cache_misses_total")
    downloads, sent = origin.downloads, origin.sent

    def request(i: int) -> dict[str, Any]:
        url = f"{base}/field.fits" if shared else f"{base}/field-{i}.fits"
        return {
            "executable": {
                "kind": kinds.CIRASA_APP,
                "app": "sleep",
                "options": {"seconds": 0.1},
                "inputs": [file_id],
            },
            "data": [{"kind": DATA, "meta": {"name": "field"}, "location": url, "size": len(origin.body)}],
        }

    t0 = time.monotonic()
    answers = await asyncio.gather(*(client.post("/sessions", json=request(i)) for i in range(jobs)))
    sessions = [await session_of(client, a) for a in answers]
    times = await asyncio.gather(*(follow(client, s, t0) for s in sessions))
    to_run = sorted(t for t, _ in times)
    return {
        "downloads": origin.downloads - downloads,
        "network_mb": (origin.sent - sent) / 1e6,
        "hits": metric("cirasa_staging_cache_hits_total") - hits,
        "misses": metric("cirasa_staging_cache_misses_total") - misses,
        "running_p50_s": to_run[len(to_run) // 2],
        "running_max_s": to_run[-1],
        "completed_max_s": max(t for _, t in times),
    }


async def run(args: argparse.Namespace) -> None:
    configure_logging("WARNING", json=False)
    origin = ThrottledOrigin(b"\x00" * int(args.mb * 1e6), args.mbps * 1e6)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="cirasa-bench-staging-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            jobs_dir=Path(tmp) / "jobs",
            platforms=[PlatformConfig(name="local", cores=args.cores, memory_gib=64, max_duration_s=3600)],
        )
        settings.staging.policy = {"allowed_hosts": ["127.0.0.1"]}
        async with in_process(settings) as client:
            image = Path(tmp) / "input.fits"
            synthetic_image(image, size=64, n_sources=1, seed=1)
            up = await client.post(
                "/caesar/api/v1.0/upload", files={"file": ("input.fits", image.read_bytes())}
            )
            file_id = up.json()["uuid"]
            rounds = {
                "own copy each": await one_round(client, origin, file_id, args.jobs, False, "own"),
                "shared (cache)": await one_round(client, origin, file_id, args.jobs, True, "shared"),
            }
    origin.shutdown()
    print(
        f"{args.jobs} jobs, {args.mb:g} MB each, origin {args.mbps:g} MB/s per download, {args.cores} cores"
    )
    cols = ("downloads", "network_mb", "hits", "misses", "running_p50_s", "running_max_s", "completed_max_s")
    print(f"{'':16}" + "".join(f"{c:>17}" for c in cols))
    for name, row in rounds.items():
        print(f"{name:16}" + "".join(f"{row[c]:>17.2f}" for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--mb", type=float, default=64)
    parser.add_argument("--mbps", type=float, default=100)
    parser.add_argument("--cores", type=int, default=4)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
