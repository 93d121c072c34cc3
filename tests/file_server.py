"""A real HTTP/1.1 server on 127.0.0.1 for staging tests (the ``origin`` fixture): serves bytes from a
thread, counts the GETs per path, and can be told to wait, stall after its headers, break off
mid-body, redirect, answer an error, announce a size of its choice or send a chunked body.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    delay_s: float = 0.0  # before the headers
    stall_s: float = 0.0  # after the headers, before the body
    die_after: int | None = None  # bytes of the body sent before the connection is closed
    content_length: int | None = None  # announced instead of the body's length
    chunked: bool = False  # no Content-Length: Transfer-Encoding chunked, in 16 KiB chunks
    redirect: str | None = None  # Location of a 302
    pause_after: int | None = None  # bytes of the body sent before a pause of pause_s
    pause_s: float = 0.0


class Origin:
    """A real HTTP/1.1 server in a thread, with routes the test sets."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.gets: Counter[str] = Counter()
        self.requests: list[str] = []  # every GET's path and query
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.origin = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # wakes handlers that wait
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, body: bytes = b"", **options: Any) -> str:
        self.routes[path] = Route(body=body, **options)
        return self.url(path)

    def count(self, path_and_query: str) -> None:
        with self._lock:
            self.gets[path_and_query.split("?", 1)[0]] += 1
            self.requests.append(path_and_query)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        origin: Origin = self.server.origin  # type: ignore[attr-defined]
        origin.count(self.path)
        route = origin.routes.get(self.path) or origin.routes.get(self.path.split("?", 1)[0])
        if route is None:
            route = Route(body=b"no such file", status=404)
        if route.delay_s and origin.stop.wait(route.delay_s):
            return
        self.send_response(route.status)
        if route.redirect:
            self.send_header("Location", route.redirect)
        self.send_header("Content-Type", route.content_type)
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            length = route.content_length if route.content_length is not None else len(route.body)
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if route.stall_s and origin.stop.wait(route.stall_s):
            return
        with contextlib.suppress(OSError):  # the client may have given up
            self._body(route, origin.stop)

    def _body(self, route: Route, stop: threading.Event) -> None:
        body = route.body if route.die_after is None else route.body[: route.die_after]
        split = len(body) if route.pause_after is None else route.pause_after
        self._send(body[:split], route.chunked)
        if route.pause_s and split < len(body) and stop.wait(route.pause_s):
            return
        self._send(body[split:], route.chunked)
        if route.chunked and route.die_after is None:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if route.die_after is not None or route.content_length is not None:
            self.close_connection = True

    def _send(self, data: bytes, chunked: bool) -> None:
        if not chunked:
            self.wfile.write(data)
        for i in range(0, len(data), 16384) if chunked else ():
            piece = data[i : i + 16384]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.flush()


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server
