"""A live gateway for tests that need real HTTP: all five services in memory, uvicorn on a free port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from cirasa.cli.runtime import SERVICES, build_service, http_app, http_config
from cirasa.common.bus import MemoryBroker
from cirasa.common.settings import Settings


class LiveGateway:
    """All five services and the gateway's HTTP on a free loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))  # the port is ours before uvicorn starts: no race for it
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or stop()
            self.error = exc

    async def _serve(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        broker = MemoryBroker()
        services = [build_service(name, self.settings, broker) for name in SERVICES]
        for service in services:
            await service.start()
        self.server = uvicorn.Server(http_config(http_app(services), self.settings))
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            for service in reversed(services):
                await service.stop()

    def start(self, timeout_s: float = 30) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while self.server is None or not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "the gateway thread did not stop"
        assert self.error is None, self.error
