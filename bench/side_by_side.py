"""bench/side_by_side: the submit path of this project next to a bare FastAPI + FastStream baseline.

    .venv/bin/python bench/side_by_side.py [--rounds 3] [--duration 10] [--connections 8]

Starts, one at a time and interleaved over ``--rounds`` rounds,

* ``bare``: ``bench/bare_gateway.py`` (validate, publish one persistent message with confirms, 202);
* ``gateway``: ``cirasa gateway`` alone on RabbitMQ (the other four not running: proposals queue up,
  and its admission limit is lifted, since nobody answers them);
* ``five``: the five services as processes on RabbitMQ (``ProcessStack``);
* ``dev``: ``cirasa dev`` (all five in one process, in-memory bus and store);
* ``floor``: ``bare`` plus ``bench/bare_consumers.py`` as planner, accounting and the gateway's
  consumer: every message a refused submission makes in ``five``, with the same client and
  guarantees and nothing else — what any implementation of the event contract costs at least;
* ``floor-batched``: ``floor`` with several events per message (``--batch`` of both scripts: the
  gateway's group commit, the planner answering a message of proposals with one message per kind),
  what a contract carrying batches would cost at least,

and loads each with the same generator, ``wrk -t1 -c<connections> -d<duration>s --latency`` posting
caesar's ``POST /caesar/api/v1.0/job`` (``bench/side_by_side.lua``). The job is one the planner
refuses (app ``sleep`` asking 600 s of wall time on a platform allowing 300 s, on an uploaded file):
a check request sees it end ABORTED, so only the submit path is measured. ``bare`` and ``gateway``
publish into the same two durable queues (the planner's and accounting's ``task.proposed``), so the
broker does the same work for both. Every run uses a fresh exchange, deleted afterwards with its queues.

Status lag (issue 14: a JobStateChanged visible in the caesar status within 1 s at p95 under load):
on the targets where the job reaches a final state (``five`` and ``dev``), a probe runs beside the
measured wrk run, in a thread of this process with its own event loop and httpx client. Every 100 ms
it submits one job of its own (the load's body, to the same URL, as the check job is), and its lag is
the time from the 202 coming back to the first final state (ABORTED, SUCCESS, FAILURE, ...) read from
``GET /caesar/api/v1.0/job/{job_id}/status``. To stay light whatever the lag, one poller reads the
status of the oldest unfinished probe job every 20 ms and, once that one is final, goes straight on to
the next: ~10 submissions and ~50 status reads a second (jobs end in about the order they came, so
each is seen within a read of its end; one ending before an older one is seen late, an upper bound).
A job not final 10 s after its 202 is a timeout and counts as 10 s in the percentiles. When wrk ends
the probe stops submitting and waits for its jobs (each still capped at 10 s); Ctrl-C stops it at once.
wrk counts only its own requests; the probe's add a little to the services' CPU seconds per 1,000
(``--no-lag-probe`` leaves it out, to compare).

Per run: req/s, latency p50/p99, non-2xx count, messages left in the run's queues at the end, the
status lag p50/p95/max (with the probe's jobs, timeouts, errors and status reads), and the CPU seconds
per 1,000 requests of every service process, the baseline, RabbitMQ's ``beam.smp`` (the whole broker:
other users of it count too) and wrk itself. At the end: each target's median over the rounds (lag:
the median of the runs' p95) and its ratio to the baseline's median over the same rounds, against
issue 14's goals. ``--json`` writes every run's figures, the lag's included (``lag_p95_ms`` ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from cirasa.cli.launcher import ProcessStack, free_port, stack_env, stop_processes, wait_http
from cirasa.cli.runtime import SERVICES
from cirasa.common.events import EVENT_TYPES, TERMINAL_STATES

API = "/caesar/api/v1.0"
HERE = Path(__file__).resolve().parent
LUA = HERE / "side_by_side.lua"
TARGETS = ("bare", "gateway", "five", "dev", "floor", "floor-batched")
FLOOR_ROLES = ("planner", "accounting", "gateway")  # bench/bare_consumers.py's
PROPOSAL_CONSUMERS = ("planner", "accounting")  # who consumes task.proposed in the real topology
PLATFORM_MAX_S = 300  # the platform's longest job ...
WALLTIME_S = 600  # ... and what every benchmark job asks for: the planner refuses it
PROBE_EVERY_S = 0.1  # the status-lag probe submits a job this often ...
POLL_EVERY_S = 0.02  # ... reads a status this often ...
LAG_CAP_S = 10.0  # ... and gives a job this long to show its final state (then: a timeout)
PROBE_HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Goal:
    """Issue 14's goals for a target (None: no goal on that figure)."""

    min_ratio: float  # req/s as a fraction of bare's
    max_p99_ms: float | None = None
    max_lag_p95_ms: float | None = None  # a JobStateChanged visible in the caesar status


GOALS = {"gateway": Goal(0.8), "five": Goal(0.5, max_p99_ms=100.0, max_lag_p95_ms=1000.0)}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """One running system under test."""

    name: str
    url: str
    pids: dict[str, int]
    exchange: str | None
    expect: str | None  # the state the check job must reach (None: 202 is enough)
    data_inputs: str = ""


@dataclass
class Run:
    target: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    backlog: int | None
    cpu_per_1k: dict[str, float]
    check: str = ""
    load: float = 0.0  # the machine's 1-minute load average at the end: other work skews the figures
    probes: int = 0  # the status-lag probe (none where no job ends: bare, gateway)
    lag_p50_ms: float | None = None
    lag_p95_ms: float | None = None
    lag_max_ms: float | None = None
    lag_timeouts: int = 0
    probe_errors: int = 0
    probe_polls: int = 0

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_per_1k.values())


# --- processes and CPU ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def beam_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "beam.smp":
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


# --- RabbitMQ topology ------------------------------------------------------------------------


def queue_names(exchange: str) -> list[str]:
    """Every queue the services can declare on ``exchange`` (as tests/conftest.py::delete_topology)."""
    names = [f"{exchange}.{s}.{cls.routing_key}" for s in SERVICES for cls in EVENT_TYPES.values()]
    return [*names, f"{exchange}.dead-letter"]


async def declare_proposal_queues(amqp_url: str, exchange: str) -> None:
    """The exchange and the durable queues the planner and accounting would read proposals from."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for service in PROPOSAL_CONSUMERS:
            queue = await channel.declare_queue(
                f"{exchange}.{service}.task.proposed",
                durable=True,
                arguments={"x-dead-letter-exchange": f"{exchange}.dlx"},
            )
            await queue.bind(ex, routing_key="task.proposed")


async def backlog(amqp_url: str, exchange: str) -> int:
    """Messages waiting in the run's queues (a passive declare per queue that exists)."""
    total = 0
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in queue_names(exchange):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                total += queue.declaration_result.message_count or 0
            except aio_pika.exceptions.ChannelClosed:
                continue
            if not channel.is_closed:
                await channel.close()
    return total


async def delete_topology(amqp_url: str, exchange: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in queue_names(exchange):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(f"{exchange}.dlx")


# --- the systems under test -------------------------------------------------------------------


@dataclass
class Harness:
    args: argparse.Namespace
    workdir: Path
    image: Path
    config: Path
    stacks: list[ProcessStack] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    def new_exchange(self, name: str, rnd: int) -> str:
        exchange = f"bench.sbs.{uuid.uuid4().hex[:8]}.{name}{rnd}"
        self.exchanges.append(exchange)
        return exchange

    def service_env(self, rundir: Path, exchange: str, name: str) -> dict[str, str]:
        extra = {
            "CIRASA_CONFIG": str(self.config),
            "CIRASA_LOG_LEVEL": "WARNING",
            # jobs stay PENDING while the planner is not running: no 429 from the per-user quota
            "CIRASA_GATEWAY__QUOTAS__ACTIVE_JOBS": "100000000",
        }
        if name == "gateway":  # nobody answers the gateway alone: its admission would hold every request
            extra["CIRASA_GATEWAY__ADMISSION_LIMIT"] = "100000000"
        return stack_env(rundir, exchange, self.args.amqp_url, extra)

    def start(self, name: str, rnd: int) -> Target:
        rundir = self.workdir / f"{name}{rnd}"
        rundir.mkdir()
        if name in ("bare", "floor", "floor-batched"):
            batch = name == "floor-batched"
            target = self.start_bare(rundir, rnd, batch)
            if name != "bare":
                consumers = self.start_consumers(rundir, target, batch)
                target.name, target.pids = name, {**target.pids, **consumers}
            return target
        if name == "dev":
            exchange = f"bench.sbs.dev{rnd}"  # in memory: nothing is declared on RabbitMQ
            stack = self.start_stack(rundir, exchange, ("dev",))
            return Target(name, stack.gateway_url, pids(stack), None, "ABORTED")
        exchange = self.new_exchange(name, rnd)
        if name == "gateway":
            asyncio.run(declare_proposal_queues(self.args.amqp_url, exchange))
            stack = self.start_stack(rundir, exchange, ("gateway",))
            return Target(name, stack.gateway_url, pids(stack), exchange, "PENDING")
        stack = self.start_stack(rundir, exchange, tuple(SERVICES))
        return Target(name, stack.gateway_url, pids(stack), exchange, "ABORTED")

    def start_stack(self, rundir: Path, exchange: str, names: tuple[str, ...]) -> ProcessStack:
        env = self.service_env(rundir, exchange, "gateway" if names == ("gateway",) else "")
        stack = ProcessStack(rundir, env, gateway_port=free_port())
        self.stacks.append(stack)
        if names == ("dev",):
            stack.ports["dev"] = stack.ports["gateway"] = stack.gateway_port
        stack.start(names)
        return stack

    def start_bare(self, rundir: Path, rnd: int, batch: bool = False) -> Target:
        exchange = self.new_exchange("bare", rnd)
        asyncio.run(declare_proposal_queues(self.args.amqp_url, exchange))
        port = free_port()
        cmd = [sys.executable, str(HERE / "bare_gateway.py"), "--port", str(port), "--exchange", exchange]
        cmd += ["--amqp-url", self.args.amqp_url, *(["--batch"] if batch else [])]
        log = (rundir / "bare.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc, 60)
        return Target("bare", url, {"bare": proc.pid}, exchange, None, data_inputs=str(uuid.uuid4()))

    def start_consumers(self, rundir: Path, target: Target, batch: bool) -> dict[str, int]:
        """bench/bare_consumers.py in each role, on the bare gateway's exchange, once they consume."""
        started: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for role in FLOOR_ROLES:
            cmd = [sys.executable, str(HERE / "bare_consumers.py"), "--role", role]
            cmd += ["--exchange", target.exchange or "", "--amqp-url", self.args.amqp_url]
            cmd += ["--batch"] if batch else []
            path = rundir / f"floor-{role}.log"
            with path.open("ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.procs.append(proc)
            started[role] = (proc, path)
        deadline = time.monotonic() + 60
        for role, (proc, path) in started.items():
            while "ready" not in path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bare_consumers --role {role} did not start: see {path}")
                time.sleep(0.1)
        return {f"floor-{role}": proc.pid for role, (proc, _) in started.items()}

    def stop_all(self) -> None:
        """Every process, then every exchange and queue this harness made; safe to call twice."""
        for stack in self.stacks:
            stack.stop()
        self.stacks.clear()
        stop_processes(self.procs)
        self.procs.clear()
        while self.exchanges:
            exchange = self.exchanges[-1]
            try:
                asyncio.run(delete_topology(self.args.amqp_url, exchange))
            except Exception as exc:  # report it, and go on with the others
                print(f"could not delete {exchange}: {exc!r}", file=sys.stderr)
            self.exchanges.pop()


def pids(stack: ProcessStack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.processes.items()}


def job_body(target: Target) -> dict[str, Any]:
    return {
        "app": "sleep",
        "data_inputs": target.data_inputs,
        "job_inputs": {"seconds": 0},
        "walltime_s": WALLTIME_S,
        "tag": "side-by-side",
    }


def prepare(target: Target, image: Path) -> tuple[str, str]:
    """Upload the image, submit one job and see it reach the expected state: the load's body, and
    what the check saw."""
    with httpx.Client(base_url=target.url + API, timeout=30) as http:
        if not target.data_inputs:
            up = http.post("/upload", files={"file": (image.name, image.read_bytes())})
            up.raise_for_status()
            target.data_inputs = up.json()["uuid"]
        body = job_body(target)
        r = http.post("/job", json=body)
        if r.status_code != 202:
            raise RuntimeError(f"{target.name}: check job answered {r.status_code}: {r.text}")
        job_id, state = r.json()["job_id"], r.json()["state"]
        deadline = time.monotonic() + 20
        while target.expect is not None and state != target.expect:
            if time.monotonic() > deadline or state not in ("PENDING", "RUNNING"):
                raise RuntimeError(f"{target.name}: the check job is {state}, not {target.expect}")
            time.sleep(0.1)
            status = http.get(f"/job/{job_id}/status").json()
            state = status["state"]
    return json.dumps(body), f"check job {r.status_code} {state}"


# --- the status-lag probe ---------------------------------------------------------------------


@dataclass
class Lag:
    """What the status-lag probe saw in one run (lags in seconds, a timed-out probe not among them)."""

    probes: int = 0
    lags: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    polls: int = 0

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile in ms over every probe, a timeout counting as LAG_CAP_S."""
        values = sorted([*self.lags, *[LAG_CAP_S] * self.timeouts])
        if not values:
            return None
        return values[max(0, math.ceil(q / 100 * len(values)) - 1)] * 1000


class LagProbe:
    """Submits a job every PROBE_EVERY_S and measures when its final state shows in the caesar status.

    Runs its own event loop in a thread, beside the blocking wrk. One poller reads the status of the
    oldest unfinished probe job every POLL_EVERY_S; once that one is final it goes straight on to the
    next. The jobs end in about the order they were submitted, so this sees each one within a poll of
    its end while the polls stay at ~1/POLL_EVERY_S however many jobs are waiting (a job ending before
    an older one is seen late: its lag is then an upper bound).
    """

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, body
        self.result = Lag()
        self.waiting: deque[tuple[str, float]] = deque()  # job id, when its 202 came back
        self.stopping, self.aborting = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, name="lag-probe", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, drain: bool = True) -> Lag:
        """Stop submitting; with ``drain``, first see the jobs already submitted end (or time out)."""
        self.stopping.set()
        if not drain:
            self.aborting.set()
        self.thread.join(LAG_CAP_S + 10)
        if self.thread.is_alive():
            self.aborting.set()
            self.thread.join()
        return self.result

    def run(self) -> None:
        try:
            asyncio.run(self.main())
        except Exception as exc:  # the run goes on without it: say so
            self.result.errors += 1
            print(f"status-lag probe failed: {exc!r}", file=sys.stderr)

    async def main(self) -> None:
        async with httpx.AsyncClient(base_url=self.url + API, timeout=PROBE_HTTP_TIMEOUT_S) as http:
            poller = asyncio.create_task(self.poll(http))
            try:
                await self.submit(http)
                await poller
            finally:
                poller.cancel()

    async def submit(self, http: httpx.AsyncClient) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            try:
                r = await http.post("/job", json=self.body)
                if r.status_code == 202:
                    self.waiting.append((r.json()["job_id"], time.monotonic()))
                    self.result.probes += 1
                else:
                    self.result.errors += 1
            except (httpx.HTTPError, ValueError, KeyError):
                self.result.errors += 1
            due = max(due + PROBE_EVERY_S, time.monotonic())
            await asyncio.sleep(due - time.monotonic())

    async def poll(self, http: httpx.AsyncClient) -> None:
        while not self.aborting.is_set():
            if not self.waiting:
                if self.stopping.is_set():
                    return
                await asyncio.sleep(POLL_EVERY_S)
                continue
            job_id, accepted = self.waiting[0]
            if time.monotonic() - accepted > LAG_CAP_S:
                self.waiting.popleft()
                self.result.timeouts += 1
                continue
            self.result.polls += 1
            try:
                r = await http.get(f"/job/{job_id}/status")
                seen = time.monotonic()
                r.raise_for_status()
                if r.json()["state"] in TERMINAL_STATES:
                    self.waiting.popleft()
                    self.result.lags.append(seen - accepted)
                    continue  # the next one may be final already
            except (httpx.HTTPError, ValueError, KeyError):
                self.result.errors += 1
            await asyncio.sleep(POLL_EVERY_S)


# --- the load ---------------------------------------------------------------------------------


def wrk(args: argparse.Namespace, url: str, body: str, duration_s: int) -> tuple[dict[str, float], float]:
    """Run wrk; its figures (from the Lua ``done``) and the CPU seconds it used."""
    cmd = [args.wrk, "-t1", f"-c{args.connections}", f"-d{duration_s}s", "--latency", "-s", str(LUA)]
    env = {**os.environ, "SBS_BODY": body}
    proc = subprocess.Popen([*cmd, url + API + "/job"], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    lines = [line for line in out.splitlines() if line.startswith("SBS_JSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    return json.loads(lines[-1].removeprefix("SBS_JSON ")), usage.ru_utime + usage.ru_stime


def measure(harness: Harness, target: Target, rnd: int) -> Run:
    args = harness.args
    body, check = prepare(target, harness.image)
    if args.warmup > 0:
        wrk(args, target.url, body, args.warmup)
    watched = {**target.pids, **{f"beam.smp[{pid}]": pid for pid in beam_pids()}}
    probed = args.lag_probe and target.expect in TERMINAL_STATES  # only there do the jobs end
    probe = LagProbe(target.url, json.loads(body)) if probed else None
    before = snapshot(watched)
    if probe is not None:
        probe.start()  # after the snapshot: its requests load the services as wrk's do
    try:
        figures, wrk_cpu = wrk(args, target.url, body, args.duration)
        after = snapshot(watched)
        queued = None
        if target.exchange is not None:
            queued = asyncio.run(backlog(args.amqp_url, target.exchange))
    except BaseException:
        if probe is not None:
            probe.stop(drain=False)
        raise
    lag = probe.stop() if probe is not None else None  # the jobs it submitted end, or time out
    requests = int(figures["requests"])
    socket_errors = sum(int(figures[k]) for k in ("connect_errors", "read_errors", "write_errors"))
    socket_errors += int(figures["timeouts"])
    run = Run(
        target=target.name,
        round=rnd,
        rps=requests / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=requests,
        non_2xx=int(figures["status_errors"]),
        socket_errors=socket_errors,
        backlog=queued,
        cpu_per_1k=cpu_per_1k(before, after, wrk_cpu, requests),
        check=check,
        load=os.getloadavg()[0],
    )
    if lag is not None:
        add_lag(run, lag)
    return run


def cpu_per_1k(
    before: dict[str, float], after: dict[str, float], wrk_cpu: float, requests: int
) -> dict[str, float]:
    """CPU seconds per 1,000 wrk requests of every process, RabbitMQ's added up, and wrk's."""
    per_1k = 1000 / requests if requests else float("nan")
    cpu = {name: (after[name] - before[name]) * per_1k for name in before if name in after}
    beam = [cpu.pop(name) for name in list(cpu) if name.startswith("beam.smp")]
    if beam:
        cpu["beam.smp"] = sum(beam)
    cpu["wrk"] = wrk_cpu * per_1k
    return cpu


def add_lag(run: Run, lag: Lag) -> None:
    run.probes, run.lag_timeouts = lag.probes, lag.timeouts
    run.probe_errors, run.probe_polls = lag.errors, lag.polls
    run.lag_p50_ms, run.lag_p95_ms, run.lag_max_ms = (lag.percentile_ms(q) for q in (50, 95, 100))


# --- reporting --------------------------------------------------------------------------------


def fmt_cpu(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.3f}" for name, seconds in cpu.items())


def fmt_lag(run: Run) -> str:
    if run.lag_p95_ms is None:  # no probe job accepted: nothing to show, unless it tried and failed
        return f"  status lag: no probe job ({run.probe_errors} errors)" if run.probe_errors else ""
    return (
        f"  status lag p50/p95/max {run.lag_p50_ms:.0f}/{run.lag_p95_ms:.0f}/{run.lag_max_ms:.0f} ms "
        f"({run.probes} probes, {run.lag_timeouts} timeouts, {run.probe_errors} errors, "
        f"{run.probe_polls} polls)"
    )


def print_run(run: Run) -> None:
    queued = "" if run.backlog is None else f"  left in queues {run.backlog}"
    print(
        f"round {run.round}  {run.target:<13} {run.rps:8.1f} req/s  p50 {run.p50_ms:6.1f} ms  "
        f"p99 {run.p99_ms:6.1f} ms  requests {run.requests}  non-2xx {run.non_2xx}  "
        f"socket errors {run.socket_errors}{queued}{fmt_lag(run)}  ({run.check})",
        flush=True,
    )
    print(
        f"         CPU s per 1,000 requests: {fmt_cpu(run.cpu_per_1k)}  (total {run.cpu_total:.3f}); "
        f"load average {run.load:.1f}"
    )


def goal(name: str, ratio: float, p99: float, lag_p95: float | None) -> str:
    """met / not met / open (a figure not measured: no bare run, no ratio), and each goal's mark."""
    if name not in GOALS:
        return ""
    wanted = GOALS[name]
    checks: list[tuple[str, bool | None]] = [
        (f"≥ {wanted.min_ratio:.0%}", None if math.isnan(ratio) else ratio >= wanted.min_ratio)
    ]
    if wanted.max_p99_ms is not None:
        checks.append((f"p99 ≤ {wanted.max_p99_ms:g} ms", p99 <= wanted.max_p99_ms))
    if wanted.max_lag_p95_ms is not None:
        met = None if lag_p95 is None else lag_p95 <= wanted.max_lag_p95_ms
        checks.append((f"lag p95 ≤ {wanted.max_lag_p95_ms:g} ms", met))
    marks = {True: "✓", False: "✗", None: "?"}
    verdict = {True: "met", False: "not met", None: "open"}[all_of(met for _, met in checks)]
    return f"{verdict} ({', '.join(f'{text} {marks[met]}' for text, met in checks)})"


def all_of(verdicts: Iterable[bool | None]) -> bool | None:
    """False if any is False, else None if any was not measured, else True."""
    seen = list(verdicts)
    return False if False in seen else None if None in seen else True


def print_table(runs: list[Run]) -> None:
    by_target = {name: [r for r in runs if r.target == name] for name in TARGETS}
    by_target = {name: rs for name, rs in by_target.items() if rs}
    med: Callable[[list[float]], float] = statistics.median
    bare_rps = med([r.rps for r in by_target.get("bare", [])]) if "bare" in by_target else float("nan")
    print()
    header = (
        f"{'target':<13} {'rounds':>6} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'lag p95 ms':>10} {'non-2xx':>7} {'CPU s/1k':>8}  {'goal (issue 14)'}"
    )
    print(header)
    print("-" * len(header))
    for name, rs in by_target.items():
        rps, p99 = med([r.rps for r in rs]), med([r.p99_ms for r in rs])
        lags = [r.lag_p95_ms for r in rs if r.lag_p95_ms is not None]
        lag_p95 = med(lags) if lags else None
        ratio = rps / bare_rps
        shown = f"{ratio:6.0%}" if ratio == ratio else f"{'-':>6}"  # no baseline: NaN
        print(
            f"{name:<13} {len(rs):>6} {rps:8.1f} {shown} {med([r.p50_ms for r in rs]):7.1f} "
            f"{p99:7.1f} {'' if lag_p95 is None else f'{lag_p95:.0f}':>10} "
            f"{sum(r.non_2xx for r in rs):>7} {med([r.cpu_total for r in rs]):8.3f}  "
            f"{goal(name, ratio, p99, lag_p95)}"
        )
    if any(name in GOALS for name in by_target):
        print("goal marks: ✓ met, ✗ not met, ? not measured (the ratio needs a bare run)")
    print("\nmedian CPU seconds per 1,000 requests, by process:")
    for name, rs in by_target.items():
        processes = dict.fromkeys(p for r in rs for p in r.cpu_per_1k)
        cpu = {p: med([r.cpu_per_1k[p] for r in rs if p in r.cpu_per_1k]) for p in processes}
        print(f"  {name:<13} {fmt_cpu(cpu)}")


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load first")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"a subset of {','.join(TARGETS)}")
    parser.add_argument("--wrk", default=shutil.which("wrk"), help="the wrk binary")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument(
        "--lag-probe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the status lag beside the load (five, dev); --no-lag-probe to see what it costs",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("CIRASA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args()
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    if not args.wrk:  # not on the PATH: install Debian's (as root), or say how
        subprocess.run(["bash", str(HERE.parent / "scripts" / "ensure-wrk.sh")], check=False)
        args.wrk = shutil.which("wrk")
    if not args.wrk or not Path(args.wrk).exists():
        parser.exit(2, "bench/side_by_side needs wrk, the HTTP load generator: apt-get install wrk\n")
    return args


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM stops the run as Ctrl-C does."""
    raise KeyboardInterrupt


async def check_broker(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=5)
    await connection.close()


def setup(args: argparse.Namespace) -> Harness:
    from cirasa.finders.imaging import synthetic_image

    try:
        asyncio.run(check_broker(args.amqp_url))
    except Exception as exc:
        sys.exit(f"RabbitMQ does not answer on {args.amqp_url}: {exc!r} (bash scripts/ensure-rabbitmq.sh)")
    workdir = Path(tempfile.mkdtemp(prefix="cirasa-side-by-side-"))
    config = workdir / "config.yaml"
    config.write_text(
        "platforms:\n"
        f"  - {{name: local, backend: local, cores: 2, memory_gib: 4, max_duration_s: {PLATFORM_MAX_S}}}\n"
    )
    image = workdir / "bench.fits"
    synthetic_image(image, size=64, n_sources=2, seed=1)
    return Harness(args, workdir, image, config)


def main() -> None:
    args = parse_args()
    harness = setup(args)
    print(
        f"side by side: {args.rounds} rounds of {', '.join(args.targets)}; wrk -t1 -c{args.connections} "
        f"-d{args.duration}s --latency; RabbitMQ {args.amqp_url}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; logs in {harness.workdir}",
        flush=True,
    )
    runs: list[Run] = []
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for rnd in range(1, args.rounds + 1):
            for name in args.targets:
                try:
                    target = harness.start(name, rnd)
                    runs.append(measure(harness, target, rnd))
                    print_run(runs[-1])
                finally:
                    harness.stop_all()
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
    finally:  # a second Ctrl-C must not interrupt the cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        harness.stop_all()
    if args.json:
        args.json.write_text(json.dumps([{**vars(r), "cpu_total": r.cpu_total} for r in runs], indent=2))
    if runs:
        print_table(runs)


if __name__ == "__main__":
    main()
