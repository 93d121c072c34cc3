"""A real HTTP server on 127.0.0.1 serving bytes from memory, for staging tests: it counts GETs per path
and can be told to answer slowly (``delays``) or to cut a body short (``cut``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class FileServer:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds before the body
    cut: set[str] = field(default_factory=set)  # paths whose body stops half way
    gets: Counter[str] = field(default_factory=Counter)

    def add(self, path: str, body: bytes, delay_s: float = 0.0) -> str:
        self.files[path] = body
        if delay_s:
            self.delays[path] = delay_s
        return f"{self.url}{path}"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            server.gets[path] += 1
            body = server.files.get(path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            time.sleep(server.delays.get(path, 0.0))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if path in server.cut else body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
