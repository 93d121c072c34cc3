"""The five services as five processes on this machine, against a real RabbitMQ (``cirasa up``,
the process-level tests and ``bench/submit``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICE_NAMES = ("gateway", "planner", "scheduler", "monitor", "accounting")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcessStack:
    workdir: Path
    env: dict[str, str]
    gateway_port: int = 8000
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def start(self, names: tuple[str, ...] = SERVICE_NAMES, ready_timeout_s: float = 60) -> ProcessStack:
        for name in names:
            self.start_one(name)
        self.wait_ready(names, ready_timeout_s)
        return self

    def start_one(self, name: str) -> None:
        port = self.ports.get(name) or (self.gateway_port if name == "gateway" else free_port())
        self.ports[name] = port
        log = (self.workdir / f"{name}.log").open("ab")
        env = {**os.environ, **self.env, "CIRASA_HTTP_PORT": str(port)}
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "cirasa.cli.main", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    def wait_ready(self, names: tuple[str, ...], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            url = f"http://127.0.0.1:{self.ports[name]}/readyz"
            what = f"{name} (see {self.workdir / (name + '.log')})"
            wait_http(url, self.processes[name], max(deadline - time.monotonic(), 0.0), what)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        stop_processes(self.processes.values())
        self.processes.clear()

    def __enter__(self) -> ProcessStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 20) -> None:
    """SIGTERM to every process still running, then wait for each; a process still there after
    ``timeout_s`` is killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stack_env(
    workdir: Path, exchange: str, amqp_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for a stack whose files live under ``workdir``."""
    return {
        "CIRASA_AMQP_URL": amqp_url,
        "CIRASA_EXCHANGE": exchange,
        "CIRASA_DATA_DIR": str(workdir / "data"),
        "CIRASA_JOBS_DIR": str(workdir / "jobs"),
        "CIRASA_LOG_LEVEL": "INFO",
        **(extra or {}),
    }


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, what: str = "") -> None:
    """Until ``url`` answers 200; fails at once if ``proc`` exits, and after ``timeout_s``."""
    what = what or url
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:g} s")
        time.sleep(0.1)
